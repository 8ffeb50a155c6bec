/**
 * Why the sender cannot POST to `url`, or null when it can: the URL as Node's
 * WHATWG parser reads it, with scheme http or https, a host and a port from 1
 * to 65535. The database accepts a strict subset of these
 * (espf.http_url_problem in sql/020_config_checks.sql); test/input-holes.test.ts
 * runs one list of URLs through both.
 */
export function httpUrlProblem(url: unknown): string | null {
  if (typeof url !== 'string') return 'not a string';
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'not a URL (the WHATWG URL parser refuses it)';
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return 'must start with http:// or https://';
  if (u.hostname === '') return 'there is no host';
  if (u.port === '0') return 'the port must be a number from 1 to 65535';
  return null;
}
