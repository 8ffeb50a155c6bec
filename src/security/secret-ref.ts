/**
 * Secrets in configuration rows may be written `env:NAME`: the value is then
 * the environment variable NAME of espf run. NAME must start with
 * ESPF_SECRET_ (docs/security.md, "Secrets: env:NAME"), so that a row, which
 * anyone who may change configuration can write, can only reach variables the
 * operator put there for handlers, never DATABASE_URL or another setting of
 * the process. The database checks the same two rules when a value is written
 * (espf.env_ref_problem in sql/020_config_checks.sql, espf.env_prefix_problem
 * in sql/022_secret_env_prefix.sql); this is the one resolver.
 */
export const ENV_REF = /^env:([A-Za-z_][A-Za-z0-9_]{0,127})$/;

/** The prefix every env:NAME must have (espf.secret_env_prefix() in the database). */
export const SECRET_ENV_PREFIX = 'ESPF_SECRET_';

/**
 * Names without the prefix that rows written before the rule still use, and
 * that the operator lets espf run read: a comma-separated list in this
 * variable of espf run's own environment (never in a row).
 */
export const LEGACY_NAMES_VARIABLE = 'ESPF_LEGACY_SECRET_NAMES';

/** Variables never read for a row, even when listed as legacy names. */
const NEVER = /^(DATABASE_URL|PG[A-Z_]*|ESPF_(?!SECRET_)[A-Z0-9_]*)$/;

export class SecretMissingError extends Error {
  readonly code: 'ESPF_SECRET_MISSING' | 'ESPF_SECRET_NOT_ALLOWED' = 'ESPF_SECRET_MISSING';
}

/** env:NAME names a variable espf does not read for rows (no ESPF_SECRET_ prefix, not a listed legacy name). */
export class SecretNotAllowedError extends SecretMissingError {
  override readonly code = 'ESPF_SECRET_NOT_ALLOWED' as const;
}

/** True when `value` is written `env:…` (well formed or not). */
export function isEnvRef(value: string | null | undefined): boolean {
  return typeof value === 'string' && value.startsWith('env:');
}

/** Whether espf run may read the variable NAME for a row. */
export function envNameAllowed(name: string, env: NodeJS.ProcessEnv = process.env): boolean {
  if (name.startsWith(SECRET_ENV_PREFIX) && name.length > SECRET_ENV_PREFIX.length) return true;
  if (NEVER.test(name)) return false;
  return (env[LEGACY_NAMES_VARIABLE] ?? '').split(',').map((s) => s.trim()).includes(name);
}

/**
 * The value of a setting: itself, or for `env:NAME` the variable NAME
 * (empty counts as not set). `what` names the setting in the error, which
 * never quotes a value.
 */
export function resolveSecret(value: string | null, what: string, env: NodeJS.ProcessEnv = process.env): string {
  if (value == null) return '';
  if (!isEnvRef(value)) return value;
  const m = ENV_REF.exec(value);
  if (!m) throw new SecretMissingError(`${what} is not a valid env:NAME (NAME: letters, digits and "_", not starting with a digit)`);
  const name = m[1]!;
  if (!envNameAllowed(name, env)) {
    throw new SecretNotAllowedError(`${what} names the environment variable ${name}, which espf does not read for rows: use a name starting with ${SECRET_ENV_PREFIX} (docs/security.md)`);
  }
  const v = env[name];
  if (v === undefined || v === '') throw new SecretMissingError(`${what} names the environment variable ${name}, which is not set`);
  return v;
}
