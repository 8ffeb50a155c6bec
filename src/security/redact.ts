/**
 * What never reaches a message, a log line or a row: passwords in URLs (in
 * user:password@ and in the password and sslpassword query parameters) and
 * the secrets an http handler or the SMTP settings carry. The one place these
 * rules live (docs/security.md).
 */

/** Query parameters that carry a password (libpq reads both from a URL). */
const SECRET_PARAMS = new Set(['password', 'sslpassword']);

/** `user:password@` of any URL in a text. */
const USERINFO_PASSWORD = /(\/\/[^/\s:@]*:)[^/\s@]*@/g;
/** `password=…` as a URL query parameter or a keyword/value pair. */
const PASSWORD_PARAM = /(^|[?&;\s])((?:ssl)?password=)[^&;\s#]*/gi;

export const MASK = '***';

/** Redacted URLs already seen: a sender redacts the same few target URLs for every attempt it logs. */
const redacted = new Map<string, string>();
const REDACTED_KEPT = 256;

/** A URL for messages: its password (user:password@ and ?password=, ?sslpassword=) masked. */
export function redactUrl(url: string): string {
  let r = redacted.get(url);
  if (r === undefined) {
    if (redacted.size >= REDACTED_KEPT) redacted.clear();
    redacted.set(url, r = redactUrlOnce(url));
  }
  return r;
}

function redactUrlOnce(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return redactText(url);
  }
  if (u.password) u.password = MASK;
  for (const key of [...u.searchParams.keys()]) {
    if (SECRET_PARAMS.has(key.toLowerCase())) u.searchParams.set(key, MASK);
  }
  return u.toString();
}

/** Whether a URL's password (user:password@, ?password=, ?sslpassword=) is the mask itself: a redacted URL, not one to use. */
export function hasMaskedPassword(url: string): boolean {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  return u.password === MASK || [...u.searchParams].some(([k, v]) => SECRET_PARAMS.has(k.toLowerCase()) && v === MASK);
}

/** Text safe for a message: the given secrets and every URL password masked. */
export function redactText(text: string, secrets: readonly string[] = []): string {
  // Neither pattern can match without an "@" or an "=" (the common case of a URL without credentials).
  if (secrets.length === 0 && !text.includes('@') && !text.includes('=')) return text;
  let out = text;
  // Longest first, so a secret that contains another is masked whole.
  for (const s of [...secrets].sort((a, b) => b.length - a.length)) if (s) out = out.split(s).join(MASK);
  return out.replace(USERINFO_PASSWORD, `$1${MASK}@`).replace(PASSWORD_PARAM, `$1$2${MASK}`);
}
