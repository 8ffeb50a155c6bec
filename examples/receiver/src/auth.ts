// Verifies the auth header of an espf request exactly as espf builds it (src/delivery/auth.ts).
// Copy this file as is: it depends on node:crypto only.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

export type AuthConfig =
  | { method: 'None' }
  | { method: 'Basic'; user: string; key: string }
  | { method: 'Custom'; type: string; credentials: string }
  /** keys: keyId -> key. Several entries let you rotate a key without downtime. */
  | { method: 'Signature'; keys: Readonly<Record<string, string>> };

export type AuthResult = { ok: true; keyId?: string } | { ok: false; reason: string };

/** A Date header further than this from the receiver's clock is refused (replay window). */
export const DEFAULT_MAX_CLOCK_SKEW_MS = 5 * 60 * 1000;

/**
 * Constant-time string equality. Both sides are hashed first so that the comparison
 * takes the same time whatever the lengths (timingSafeEqual itself needs equal lengths,
 * and an early length check would leak the secret's length).
 */
export function safeEqual(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a, 'utf8').digest();
  const hb = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(ha, hb);
}

/** The exact string espf signs: the lower-case header name, a colon, a space, the Date header's value. */
export function signingString(date: string): string {
  return `date: ${date}`;
}

/** base64(HMAC-SHA1(key, 'date: <Date>')), the `signature` parameter espf sends. */
export function computeSignature(key: string, date: string): string {
  return createHmac('sha1', key).update(signingString(date), 'utf8').digest('base64');
}

export interface SignatureParams {
  keyId?: string;
  algorithm?: string;
  headers?: string;
  signature?: string;
}

/**
 * Parses `Signature keyId="k1",algorithm="hmac-sha1",headers="date",signature="..."`.
 * Returns null when the value is not a Signature header at all or a parameter is malformed.
 */
export function parseSignatureHeader(value: string): SignatureParams | null {
  const m = /^\s*Signature\s+(.*)$/is.exec(value);
  if (!m) return null;
  const rest = m[1] ?? '';
  const params: Record<string, string> = {};
  // name="value" pairs separated by commas; values are quoted and contain no quotes.
  const re = /\s*([A-Za-z]+)\s*=\s*"([^"]*)"\s*(,|$)/y;
  let pos = 0;
  while (pos < rest.length) {
    re.lastIndex = pos;
    const p = re.exec(rest);
    if (!p || p.index !== pos) return null;
    const name = p[1] ?? '';
    if (Object.hasOwn(params, name)) return null; // a repeated parameter is ambiguous: refuse
    params[name] = p[2] ?? '';
    pos = re.lastIndex;
    if (p[3] === '') break;
  }
  if (pos < rest.length) return null;
  return { keyId: params.keyId, algorithm: params.algorithm, headers: params.headers, signature: params.signature };
}

export interface VerifyInput {
  /** The value of the configured auth header, or undefined when absent. */
  authorization: string | undefined;
  /** The Date header, or undefined when absent. */
  date: string | undefined;
  /** The receiver's clock in ms since the epoch. */
  now: number;
  maxClockSkewMs?: number;
}

export function verifyAuth(config: AuthConfig, input: VerifyInput): AuthResult {
  if (config.method === 'None') return { ok: true };
  const value = input.authorization;
  if (value === undefined || value === '') return { ok: false, reason: 'missing auth header' };

  switch (config.method) {
    case 'Basic': {
      const m = /^\s*Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(value);
      if (!m) return { ok: false, reason: 'auth header is not Basic credentials' };
      const decoded = Buffer.from(m[1] ?? '', 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon < 0) return { ok: false, reason: 'Basic credentials have no colon' };
      // Evaluate both comparisons: no short-circuit that would tell which half was wrong.
      const userOk = safeEqual(decoded.slice(0, colon), config.user);
      const keyOk = safeEqual(decoded.slice(colon + 1), config.key);
      return userOk && keyOk ? { ok: true } : { ok: false, reason: 'wrong Basic user or key' };
    }
    case 'Custom': {
      // espf sends `<custom_auth_type> <custom_auth_credentials>` verbatim.
      return safeEqual(value, `${config.type} ${config.credentials}`)
        ? { ok: true }
        : { ok: false, reason: 'wrong Custom type or credentials' };
    }
    case 'Signature': {
      const p = parseSignatureHeader(value);
      if (!p) return { ok: false, reason: 'auth header is not a well-formed Signature' };
      if (!p.keyId || !p.signature) return { ok: false, reason: 'Signature lacks keyId or signature' };
      if (p.algorithm !== undefined && p.algorithm.toLowerCase() !== 'hmac-sha1') {
        return { ok: false, reason: `unsupported Signature algorithm "${p.algorithm}"` };
      }
      if (p.headers !== undefined && p.headers.trim().toLowerCase() !== 'date') {
        return { ok: false, reason: `unsupported Signature headers "${p.headers}" (expected "date")` };
      }
      const key = Object.hasOwn(config.keys, p.keyId) ? config.keys[p.keyId] : undefined;
      if (key === undefined) return { ok: false, reason: 'unknown Signature keyId' };
      if (input.date === undefined || input.date === '') return { ok: false, reason: 'missing Date header' };
      const t = Date.parse(input.date);
      if (Number.isNaN(t)) return { ok: false, reason: 'unparseable Date header' };
      const skew = input.maxClockSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS;
      if (Math.abs(input.now - t) > skew) return { ok: false, reason: 'Date header too far from the receiver clock' };
      return safeEqual(p.signature, computeSignature(key, input.date))
        ? { ok: true, keyId: p.keyId }
        : { ok: false, reason: 'bad Signature' };
    }
  }
}
