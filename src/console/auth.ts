import { createHash, createHmac, randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/**
 * Console authentication: scrypt password hashes (a random salt per user), a
 * session cookie carrying a random id signed with HMAC-SHA256, and a per-
 * instance limit on failed logins. The session rows are in espf.console_sessions
 * (src/console/store.ts); only the SHA-256 of a session id is stored.
 */

const SCRYPT = { N: 16384, r: 8, p: 1, keylen: 32 } as const;
export const MIN_PASSWORD_CHARS = 10;
export const COOKIE = 'espf_console';

function scrypt(password: string, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scryptCb(password, salt, keylen, { ...opts, maxmem: 64 * 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** scrypt$N$r$p$<salt>$<hash> (base64). */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, SCRYPT.keylen, { N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p });
  return ['scrypt', SCRYPT.N, SCRYPT.r, SCRYPT.p, salt.toString('base64'), key.toString('base64')].join('$');
}

/** A hash of a password nobody has: wrong user names cost the same time as wrong passwords. */
let decoy: Promise<string> | undefined;

export async function verifyPassword(password: string, stored: string | null): Promise<boolean> {
  const parts = (stored ?? await (decoy ??= hashPassword(randomBytes(16).toString('hex')))).split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  const salt = Buffer.from(parts[4]!, 'base64');
  const expected = Buffer.from(parts[5]!, 'base64');
  const key = await scrypt(password, salt, expected.length, { N, r, p });
  return timingSafeEqual(key, expected) && stored !== null;
}

export function newSessionId(): string {
  return randomBytes(32).toString('base64url');
}

export function newCsrfToken(): string {
  return randomBytes(24).toString('base64url');
}

export function sessionKey(id: string): Buffer {
  return createHash('sha256').update(id).digest();
}

function mac(id: string, secret: string): string {
  return createHmac('sha256', secret).update(id).digest('base64url');
}

/** The cookie value: <id>.<hmac>. */
export function signSession(id: string, secret: string): string {
  return `${id}.${mac(id, secret)}`;
}

/** The session id of a signed cookie value, or null when the signature does not match. */
export function unsignSession(value: string, secret: string): string | null {
  const dot = value.lastIndexOf('.');
  if (dot <= 0) return null;
  const id = value.slice(0, dot);
  return sameString(value.slice(dot + 1), mac(id, secret)) ? id : null;
}

export function sameString(a: string, b: string): boolean {
  const h = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(h(a), h(b));
}

export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

export function sessionCookie(value: string, maxAgeS: number, secure: boolean): string {
  return `${COOKIE}=${value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age=${Math.floor(maxAgeS)}${secure ? '; Secure' : ''}`;
}

export function clearedCookie(secure: boolean): string {
  return `${COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0${secure ? '; Secure' : ''}`;
}

/** Failed logins per key (client address, user name) in a sliding window. */
export class LoginLimiter {
  private failures = new Map<string, number[]>();

  /** Seconds until the key may try again, or 0. */
  blockedFor(key: string, attempts: number, windowMs: number, now = Date.now()): number {
    const list = (this.failures.get(key) ?? []).filter((t) => t > now - windowMs);
    if (list.length) this.failures.set(key, list); else this.failures.delete(key);
    if (list.length < attempts) return 0;
    return Math.max(1, Math.ceil((list[0]! + windowMs - now) / 1000));
  }

  fail(key: string, now = Date.now()): void {
    const list = this.failures.get(key) ?? [];
    list.push(now);
    if (list.length > 1000) list.splice(0, list.length - 1000);
    this.failures.set(key, list);
    if (this.failures.size > 10_000) this.failures.delete(this.failures.keys().next().value!);
  }
}
