import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { EspfError } from '../errors.ts';
import { embeddedClusterDir, LOCATION_FILE } from './database-url.ts';

/**
 * PostgreSQL refuses to run as root, so as root our clusters run as the
 * unprivileged user `postgres`. That user must be able to reach the binaries
 * and the data directory. A repository in a private directory (root's home,
 * mode 0700, or a `mktemp -d` folder) is closed to it, and espf never changes
 * permissions outside the repository. So, as root:
 *   - binaries that `postgres` cannot reach are copied (bin, lib, share) to a
 *     directory of root's that everyone may read: stagedBinDir();
 *   - a cluster directory that `postgres` cannot reach is kept outside the
 *     repository, in a directory of root's under /var/lib/espf: outsideHome().
 */
export const PG_USER = 'postgres';

export const isRoot = (): boolean => typeof process.getuid === 'function' && process.getuid() === 0;

/** Whether the user `postgres` can enter `dir` (every parent searchable), as the kernel decides. */
export function postgresCanEnter(dir: string): boolean {
  const r = spawnSync('runuser', ['-u', PG_USER, '--', 'test', '-x', dir], { encoding: 'utf8' });
  return r.status === 0;
}

/**
 * A directory only root can change: created (0755) if missing; refused if it is
 * a symlink, not a directory, not root's, or writable by group or others (someone
 * else made it first in a world-writable parent such as /var/tmp).
 */
export function ensureRootDir(dir: string): void {
  try {
    mkdirSync(dir, { mode: 0o755 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const st = lstatSync(dir);
  if (!st.isDirectory() || st.uid !== 0 || (st.mode & 0o022) !== 0) {
    throw new EspfError('ESPF_CLUSTER',
      `${dir} must be a directory owned by root and writable by root only (it is ${st.isSymbolicLink() ? 'a symlink' : `mode ${(st.mode & 0o7777).toString(8)}, owner uid ${st.uid}`}): remove it and start again`);
  }
}

/** path, type, size and mode of every entry under `root`, sorted: what a copy must match. */
function manifest(root: string): string {
  const lines: string[] = [];
  const walk = (rel: string) => {
    for (const name of readdirSync(path.join(root, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const p = path.join(root, r);
      const st = lstatSync(p);
      if (st.isSymbolicLink()) lines.push(`${r}\tl\t${readlinkSync(p)}`);
      else if (st.isDirectory()) { lines.push(`${r}\td`); walk(r); }
      else lines.push(`${r}\tf\t${st.size}\t${(st.mode & 0o111) ? 'x' : '-'}`);
    }
  };
  walk('');
  return lines.join('\n');
}

/** Makes a copied tree readable (and, where it was, executable) by everyone, writable by root only. */
function openForReading(root: string): void {
  const walk = (p: string) => {
    const st = lstatSync(p);
    if (st.isSymbolicLink()) return;
    if (st.isDirectory()) {
      chmodSync(p, 0o755);
      for (const name of readdirSync(p)) walk(path.join(p, name));
    } else {
      chmodSync(p, (st.mode & 0o111) ? 0o755 : 0o644);
    }
  };
  walk(root);
}

/**
 * The bin directory to run PostgreSQL from. Not root, or `postgres` can reach
 * `binDir`: `binDir` itself. Else a copy of its installation (the parent of
 * bin/: bin, lib, share) under `cacheDir` (default /var/tmp/espf-postgres), named by version and a digest of the files' names, sizes
 * and modes, owned by root and closed to writes by others. An existing copy is
 * used when its files match the installation's, else replaced.
 */
export function stagedBinDir(binDir: string, cacheDir = '/var/tmp/espf-postgres'): string {
  if (!isRoot() || postgresCanEnter(path.join(binDir, 'postgres'))) return binDir;
  const install = path.dirname(binDir);
  const want = manifest(install);
  const version = packageVersion(install);
  const digest = createHash('sha256').update(want).digest('hex').slice(0, 16);
  ensureRootDir(cacheDir);
  const target = path.join(cacheDir, `${version}-${digest}`);
  if (existsSync(target)) {
    const st = lstatSync(target);
    if (st.isDirectory() && st.uid === 0 && (st.mode & 0o022) === 0 && manifest(target) === want) return path.join(target, 'bin');
    rmSync(target, { recursive: true, force: true });
  }
  // Copy into a fresh private directory of root's, open it for reading, then rename it into place in one step.
  const staging = mkdtempSync(path.join(cacheDir, '.staging-'));
  try {
    for (const part of readdirSync(install)) {
      cpSync(path.join(install, part), path.join(staging, part), { recursive: true, verbatimSymlinks: true });
    }
    openForReading(staging);
    if (manifest(staging) !== want) throw new EspfError('ESPF_CLUSTER', `copying the PostgreSQL binaries to ${staging} gave different files`);
    try {
      renameSync(staging, target);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
      // Another start copied them meanwhile: use that copy if it is right.
      if (manifest(target) !== want) throw new EspfError('ESPF_CLUSTER', `${target} does not match the PostgreSQL binaries of ${install}: remove it and start again`);
    }
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
  return path.join(target, 'bin');
}

function packageVersion(install: string): string {
  for (const p of [path.join(install, '..', 'package.json'), path.join(install, 'package.json')]) {
    try {
      const v = JSON.parse(readFileSync(p, 'utf8')).version;
      if (typeof v === 'string' && /^[A-Za-z0-9._-]+$/.test(v)) return v;
    } catch { /* not a package: the machine's PostgreSQL */ }
  }
  return 'pg';
}

/**
 * Where a cluster meant for `dir` lives. `dir` itself unless we are root and
 * `postgres` cannot enter its parent; then /var/lib/espf/<name>-<digest of dir>
 * (under `base`), a directory of root's that
 * startCluster hands to `postgres`, recorded in `dir`/location so the next
 * start and the other espf commands find it.
 */
export function clusterHome(dir: string, base = '/var/lib/espf'): { home: string; outside: boolean } {
  const known = embeddedClusterDir(dir);
  if (known !== dir) return { home: known, outside: true };
  if (!isRoot() || postgresCanEnter(path.dirname(dir))) return { home: dir, outside: false };
  ensureRootDir(base);
  const name = path.basename(path.dirname(dir)).replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 40) || 'espf';
  const home = path.join(base, `${name}-${createHash('sha256').update(dir).digest('hex').slice(0, 12)}`);
  try {
    mkdirSync(home, { mode: 0o755 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    if (!lstatSync(home).isDirectory()) throw new EspfError('ESPF_CLUSTER', `${home} is not a directory: remove it and start again`);
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(path.join(dir, LOCATION_FILE), `${home}\n`);
  return { home, outside: true };
}
