import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { EspfEnv } from '../config/env.ts';
import { EspfError } from '../errors.ts';

/** The database `espf run` creates in its embedded PostgreSQL (under ESPF_HOME) when DATABASE_URL is not set. */
export const EMBEDDED_DATABASE = 'espf';

export const LOCATION_FILE = 'location';

/**
 * The directory of the embedded cluster of `dir` (ESPF_HOME): `dir` itself, or
 * the directory outside the repository that `dir`/location names (as root,
 * when the user `postgres` cannot enter the repository; src/db/pg-home.ts).
 */
export function embeddedClusterDir(dir: string): string {
  const pointer = path.join(dir, LOCATION_FILE);
  if (existsSync(pointer)) {
    const home = readFileSync(pointer, 'utf8').trim();
    if (home) return home;
  }
  return dir;
}

/** The port of the embedded cluster of `dir` (ESPF_HOME) if it is running, from its postmaster.pid. */
export function embeddedPort(dir: string): number | undefined {
  const pidFile = path.join(embeddedClusterDir(dir), 'data', 'postmaster.pid');
  if (!existsSync(pidFile)) return undefined;
  const lines = readFileSync(pidFile, 'utf8').split('\n');
  const pid = Number(lines[0]);
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return undefined;
  }
  const port = Number(lines[3]);
  return Number.isInteger(port) && port > 0 ? port : undefined;
}

export function embeddedUrl(port: number): string {
  return `postgres://postgres@127.0.0.1:${port}/${EMBEDDED_DATABASE}`;
}

/**
 * DATABASE_URL, else the embedded database of `espf run` when it is running.
 */
export function resolveDatabaseUrl(env: Pick<EspfEnv, 'databaseUrl' | 'home'>): string {
  if (env.databaseUrl) return env.databaseUrl;
  const port = embeddedPort(env.home);
  if (port) return embeddedUrl(port);
  throw new EspfError('ESPF_NO_DATABASE', 'DATABASE_URL is not set and the embedded database is not running (start it with: npx espf run)');
}
