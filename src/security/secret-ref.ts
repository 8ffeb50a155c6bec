/**
 * Secrets in configuration rows may be written `env:NAME`: the value is then
 * the environment variable NAME of espf run. The database accepts only this
 * form of NAME (espf.env_ref_problem in sql/020_config_checks.sql); this is
 * the one resolver of it.
 */
export const ENV_REF = /^env:([A-Za-z_][A-Za-z0-9_]{0,127})$/;

export class SecretMissingError extends Error {
  readonly code = 'ESPF_SECRET_MISSING';
}

/** True when `value` is written `env:…` (well formed or not). */
export function isEnvRef(value: string | null | undefined): boolean {
  return typeof value === 'string' && value.startsWith('env:');
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
  const v = env[m[1]!];
  if (v === undefined || v === '') throw new SecretMissingError(`${what} names the environment variable ${m[1]}, which is not set`);
  return v;
}
