import path from 'node:path';
import pino from 'pino';
import { isPostgresUrl } from '../db/hosts.ts';
import { isScryptN, SCRYPT_N_DEFAULT, SCRYPT_N_MAX, SCRYPT_N_MIN } from '../console/auth.ts';
import { EspfError } from '../errors.ts';
import { parseDenyList } from '../security/address-policy.ts';
import { ROOT } from '../paths.ts';
import { escapeTerminal } from '../security/terminal.ts';

/**
 * Every setting espf takes from environment variables, read and checked here
 * and nowhere else (docs/cli.md lists them). A bad value is refused before
 * anything starts, in one line that names the variable:
 *   ESPF_HTTP_PORT=abc is not a port (1–65535, or 0 for any free port)
 */
export interface EspfEnv {
  /** DATABASE_URL; undefined when not set (or empty): the embedded database. */
  readonly databaseUrl: string | undefined;
  /** ESPF_HOME: where `espf run` keeps its embedded PostgreSQL (default ./.espf of the repository). */
  readonly home: string;
  /** ESPF_PG_PORT: the port of the embedded PostgreSQL (default 54329). */
  readonly pgPort: number;
  /** ESPF_HTTP_PORT: /healthz, /metrics and the status API (default 9187; 0: any free port). */
  readonly httpPort: number;
  /** ESPF_HTTP_HOST: the address they listen on (default 127.0.0.1). */
  readonly httpHost: string;
  /** ESPF_LOG_LEVEL (default info). */
  readonly logLevel: string;
  /** ESPF_LOG_FORMAT: json or pretty; undefined: pretty on a terminal, else json. */
  readonly logFormat: 'json' | 'pretty' | undefined;
  /** ESPF_LOG_DIR: where provisioning.log is written (default ./log). */
  readonly logDir: string;
  /** ESPF_CONSOLE_SECURE_COOKIE: 1, the console's session cookie is always Secure; 0, only behind https; unset, unless the Host is loopback. */
  readonly consoleSecureCookie: boolean | undefined;
  /** ESPF_CONSOLE_SCRYPT_N: the scrypt cost of new console password hashes and of the check for an unknown user (default 2^17). */
  readonly consoleScryptN: number;
  /** ESPF_CONSOLE_TEST_EVENT_DENY: addresses, networks (CIDR) and loopback, private, link-local, that "Send a test event" refuses (default: none). */
  readonly consoleTestEventDeny: readonly string[];
  /** ESPF_CA_DIR: when set, every ca_file must lie inside this folder (src/security/ca-file.ts). */
  readonly caDir: string | undefined;
  /** NO_COLOR set (to anything but ''): no colours in pretty logs. */
  readonly noColor: boolean;
  /** ESPF_WINDOW: deliveries of one http handler `espf run` holds in memory at most (docs/operations.md, "Memory"); undefined: the default. */
  readonly window: number | undefined;
  /**
   * ESPF_STOP_TIMEOUT: seconds from SIGTERM (or SIGINT) to the exit of `espf run`,
   * as milliseconds (default 25 s: under the 30 s of Kubernetes and the 90 s of
   * systemd); outcomes not recorded by then are counted, and replayed at the next start.
   */
  readonly stopTimeoutMs: number;
}

export const DEFAULT_HTTP_PORT = 9187;
export const DEFAULT_PG_PORT = 54329;
export const DEFAULT_STOP_TIMEOUT_S = 25;

function refuse(name: string, value: string, rule: string): never {
  const chars = [...value];
  const shown = value === '' ? "''" : escapeTerminal(chars.length > 80 ? `${chars.slice(0, 80).join('')}…` : value);
  throw new EspfError('ESPF_ENV', `${name}=${shown} ${rule}`);
}

function port(env: NodeJS.ProcessEnv, name: string, fallback: number, allowZero: boolean): number {
  const v = env[name];
  if (v === undefined) return fallback;
  const n = /^[0-9]{1,5}$/.test(v) ? Number(v) : NaN;
  if (!(n >= (allowZero ? 0 : 1) && n <= 65535)) refuse(name, v, `is not a port (1–65535${allowZero ? ', or 0 for any free port' : ''})`);
  return n;
}

function nonEmpty(env: NodeJS.ProcessEnv, name: string, fallback: string, what: string): string {
  const v = env[name];
  if (v === undefined) return fallback;
  if (v.trim() === '' || /[\u0000-\u001f\u007f]/.test(v)) refuse(name, v, `is not ${what}`);
  return v;
}

function scryptN(env: NodeJS.ProcessEnv): number {
  const v = env.ESPF_CONSOLE_SCRYPT_N;
  if (v === undefined || v === '') return SCRYPT_N_DEFAULT;
  const n = /^[0-9]{1,8}$/.test(v) ? Number(v) : NaN;
  if (!isScryptN(n)) refuse('ESPF_CONSOLE_SCRYPT_N', v, `is not a power of two from ${SCRYPT_N_MIN} to ${SCRYPT_N_MAX}`);
  return n;
}

function testEventDeny(env: NodeJS.ProcessEnv): string[] {
  const { entries, bad } = parseDenyList(env.ESPF_CONSOLE_TEST_EVENT_DENY ?? '');
  if (bad !== null) refuse('ESPF_CONSOLE_TEST_EVENT_DENY', env.ESPF_CONSOLE_TEST_EVENT_DENY!, `has ${JSON.stringify(bad.slice(0, 80))}, which is not an address, a network (CIDR), loopback, private or link-local`);
  return entries;
}

function deliveryWindow(env: NodeJS.ProcessEnv): number | undefined {
  const v = env.ESPF_WINDOW;
  if (v === undefined || v === '') return undefined;
  const n = /^[0-9]{1,8}$/.test(v) ? Number(v) : NaN;
  if (!(n >= 100 && n <= 10_000_000)) refuse('ESPF_WINDOW', v, 'is not a number of deliveries from 100 to 10000000');
  return n;
}

function stopTimeout(env: NodeJS.ProcessEnv): number {
  const v = env.ESPF_STOP_TIMEOUT;
  if (v === undefined) return DEFAULT_STOP_TIMEOUT_S * 1000;
  const n = /^[0-9]{1,4}(\.[0-9]{1,3})?$/.test(v) ? Number(v) : NaN;
  if (!(n >= 1 && n <= 3600)) refuse('ESPF_STOP_TIMEOUT', v, 'is not a number of seconds from 1 to 3600');
  return Math.round(n * 1000);
}

/** Reads and checks the environment; throws EspfError ESPF_ENV naming the first bad variable. */
export function readEnv(env: NodeJS.ProcessEnv = process.env): EspfEnv {
  const databaseUrl: string | undefined = env.DATABASE_URL || undefined;
  if (databaseUrl !== undefined) {
    // Never quote the value: it may carry a password. Several hosts are allowed (src/db/hosts.ts).
    if (!isPostgresUrl(databaseUrl)) throw new EspfError('ESPF_ENV', 'DATABASE_URL is not a PostgreSQL connection string (postgres://user@host:port/database)');
  }
  const levels = [...Object.keys(pino.levels.values), 'silent'];
  const logLevel = env.ESPF_LOG_LEVEL ?? 'info';
  if (!levels.includes(logLevel)) refuse('ESPF_LOG_LEVEL', logLevel, `is not a log level (${levels.join(', ')})`);
  const format = env.ESPF_LOG_FORMAT;
  if (format !== undefined && format !== '' && format !== 'json' && format !== 'pretty') refuse('ESPF_LOG_FORMAT', format, 'is not a log format (json or pretty)');
  const secureCookie = env.ESPF_CONSOLE_SECURE_COOKIE;
  if (secureCookie !== undefined && secureCookie !== '0' && secureCookie !== '1') refuse('ESPF_CONSOLE_SECURE_COOKIE', secureCookie, 'is not 0 or 1');
  return {
    databaseUrl,
    home: path.resolve(nonEmpty(env, 'ESPF_HOME', path.join(ROOT, '.espf'), 'a folder')),
    pgPort: port(env, 'ESPF_PG_PORT', DEFAULT_PG_PORT, false),
    httpPort: port(env, 'ESPF_HTTP_PORT', DEFAULT_HTTP_PORT, true),
    httpHost: nonEmpty(env, 'ESPF_HTTP_HOST', '127.0.0.1', 'a host name or address'),
    logLevel,
    logFormat: format === 'json' || format === 'pretty' ? format : undefined,
    logDir: nonEmpty(env, 'ESPF_LOG_DIR', 'log', 'a folder'),
    consoleSecureCookie: secureCookie === undefined ? undefined : secureCookie === '1',
    consoleScryptN: scryptN(env),
    consoleTestEventDeny: testEventDeny(env),
    caDir: env.ESPF_CA_DIR === undefined ? undefined : path.resolve(nonEmpty(env, 'ESPF_CA_DIR', '', 'a folder')),
    noColor: Boolean(env.NO_COLOR),
    window: deliveryWindow(env),
    stopTimeoutMs: stopTimeout(env),
  };
}
