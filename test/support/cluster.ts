import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from '@databases/pg';
import { connect } from '../../src/db/connect.ts';
import { findBinDir, startCluster, type Cluster } from '../../src/db/cluster.ts';
import { migrate } from '../../src/migrate/migrate.ts';
import { ROOT } from '../../src/paths.ts';

/**
 * The PostgreSQL server `make test` uses: DATABASE_URL when set; else a Docker
 * engine when one answers; else a throwaway cluster started here (fsync off).
 * A migrated template database is built once; every test file clones it.
 */
export interface TestServer {
  readonly adminUrl: string;       // a database to run CREATE/DROP DATABASE from
  readonly template: string;
  readonly cluster?: Cluster;      // set when we started it ourselves
  readonly kind: 'DATABASE_URL' | 'docker' | 'throwaway';
}

let server: TestServer | undefined;

export function testServer(): TestServer {
  if (!server) throw new Error('the test server is not started (test/support/hooks.ts did not run)');
  return server;
}

function dockerAnswers(): boolean {
  const r = spawnSync('docker', ['info', '--format', '{{.ServerVersion}}'], { encoding: 'utf8', timeout: 5000 });
  return r.status === 0 && r.stdout.trim() !== '';
}

function cleanStaleClusters(): void {
  const tmp = os.tmpdir();
  for (const name of readdirSync(tmp)) {
    const m = /^espf-test-(\d+)$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    try { process.kill(pid, 0); continue; } catch { /* owner is gone */ }
    const data = path.join(tmp, name, 'data');
    if (existsSync(path.join(data, 'postmaster.pid'))) {
      const bin = path.join(findBinDir(), 'pg_ctl');
      const argv = ['-D', data, '-m', 'immediate', 'stop'];
      if (process.getuid?.() === 0) spawnSync('runuser', ['-u', 'postgres', '--', bin, ...argv]);
      else spawnSync(bin, argv);
    }
    // Clusters of other tests under it (test/support/standby.ts): immediate shutdown.
    for (const sub of readdirSync(path.join(tmp, name), { withFileTypes: true })) {
      if (!sub.isDirectory()) continue;
      for (const node of readdirSync(path.join(tmp, name, sub.name))) {
        const pidFile = path.join(tmp, name, sub.name, node, 'data', 'postmaster.pid');
        if (!existsSync(pidFile)) continue;
        try { process.kill(Number(readFileSync(pidFile, 'utf8').split('\n')[0]), 'SIGQUIT'); } catch { /* gone */ }
      }
    }
    spawnSync('rm', ['-rf', path.join(tmp, name)]);
  }
}

export async function startTestServer(): Promise<TestServer> {
  let adminUrl: string;
  let kind: TestServer['kind'];
  let cluster: Cluster | undefined;
  if (process.env.DATABASE_URL) {
    adminUrl = process.env.DATABASE_URL;
    kind = 'DATABASE_URL';
  } else if (dockerAnswers()) {
    const up = spawnSync('docker', ['compose', '-f', path.join(ROOT, 'docker-compose.yml'), 'up', '-d', '--wait', 'postgres'], { stdio: 'inherit' });
    if (up.status !== 0) throw new Error('docker compose up failed');
    adminUrl = 'postgres://postgres:postgres@127.0.0.1:55432/postgres';
    kind = 'docker';
  } else {
    cleanStaleClusters();
    cluster = await startCluster({ dir: path.join(os.tmpdir(), `espf-test-${process.pid}`), durable: false });
    adminUrl = cluster.url;
    kind = 'throwaway';
  }
  const template = `espf_template_${process.pid}`;
  const admin = connect({ connectionString: adminUrl, poolSize: 2 });
  try {
    await admin.query(sql`DROP DATABASE IF EXISTS ${sql.ident(template)}`);
    await admin.query(sql`CREATE DATABASE ${sql.ident(template)}`);
  } finally {
    await admin.dispose();
  }
  const tdb = connect({ connectionString: withDatabase(adminUrl, template), poolSize: 1 });
  try {
    await migrate(tdb);
  } finally {
    await tdb.dispose();
  }
  server = { adminUrl, template, cluster, kind };
  return server;
}

export async function stopTestServer(): Promise<void> {
  if (!server) return;
  const s = server;
  server = undefined;
  const admin = connect({ connectionString: s.adminUrl, poolSize: 1 });
  try {
    await admin.query(sql`DROP DATABASE IF EXISTS ${sql.ident(s.template)} WITH (FORCE)`);
  } catch { /* best effort */ } finally {
    await admin.dispose();
  }
  if (s.cluster) {
    await s.cluster.stop();
    await rm(s.cluster.dir, { recursive: true, force: true });
  }
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}
