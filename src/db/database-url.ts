import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { EspfError } from '../errors.ts';
import { ROOT } from '../paths.ts';

/** Where `espf run` keeps its embedded PostgreSQL when DATABASE_URL is not set. */
export const EMBEDDED_DIR = process.env.ESPF_HOME ? path.resolve(process.env.ESPF_HOME) : path.join(ROOT, '.espf');
export const EMBEDDED_DATABASE = 'espf';

/** The port of the embedded cluster if it is running, from its postmaster.pid. */
export function embeddedPort(dir = EMBEDDED_DIR): number | undefined {
  const pidFile = path.join(dir, 'data', 'postmaster.pid');
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
export function resolveDatabaseUrl(env: NodeJS.ProcessEnv = process.env): string {
  if (env.DATABASE_URL) return env.DATABASE_URL;
  const port = embeddedPort();
  if (port) return embeddedUrl(port);
  throw new EspfError('ESPF_NO_DATABASE', 'DATABASE_URL is not set and the embedded database is not running (start it with: npx espf run)');
}
