import { BlockList, isIP } from 'node:net';
import { createHash, createHmac, randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';

/**
 * Console authentication: scrypt password hashes (a random salt per user), a
 * session cookie carrying a random id signed with HMAC-SHA256, and a per-
 * instance limit on failed logins. The session rows are in espf.console_sessions
 * (src/console/store.ts); only the SHA-256 of a session id is stored.
 */

/**
 * The scrypt cost N of new hashes: 2^17 (with r = 8, 128 MiB and about half a
 * second per check). ESPF_CONSOLE_SCRYPT_N sets another power of two from
 * SCRYPT_N_MIN to SCRYPT_N_MAX (src/config/env.ts). Every hash carries its own
 * N, r and p, so hashes made at another cost still verify.
 */
export const SCRYPT_N_DEFAULT = 2 ** 17;
export const SCRYPT_N_MIN = 2 ** 14;
export const SCRYPT_N_MAX = 2 ** 20;
const SCRYPT = { r: 8, p: 1, keylen: 32 } as const;
export const MIN_PASSWORD_CHARS = 10;
export const COOKIE = 'espf_console';

function scrypt(password: string, salt: Buffer, keylen: number, opts: Required<Pick<ScryptOptions, 'N' | 'r' | 'p'>>): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // scrypt needs 128 · N · r bytes; twice that leaves room for the rest.
    scryptCb(password, salt, keylen, { ...opts, maxmem: 256 * opts.N * opts.r }, (err, key) => (err ? reject(err) : resolve(key)));
  });
}

/** scrypt$N$r$p$<salt>$<hash> (base64), at cost N (SCRYPT_N_DEFAULT unless configured). */
export async function hashPassword(password: string, N = SCRYPT_N_DEFAULT): Promise<string> {
  if (!isScryptN(N)) throw new RangeError(`scrypt N ${N} is not a power of two from ${SCRYPT_N_MIN} to ${SCRYPT_N_MAX}`);
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, SCRYPT.keylen, { N, r: SCRYPT.r, p: SCRYPT.p });
  return ['scrypt', N, SCRYPT.r, SCRYPT.p, salt.toString('base64'), key.toString('base64')].join('$');
}

export function isScryptN(n: number): boolean {
  return Number.isSafeInteger(n) && n >= SCRYPT_N_MIN && n <= SCRYPT_N_MAX && (n & (n - 1)) === 0;
}

/** Hashes of a password nobody has, per cost: wrong user names cost the same time as wrong passwords. */
const decoys = new Map<number, Promise<string>>();

/**
 * Whether `password` matches the stored hash (its own N, r and p). A hash whose
 * parameters are outside what espf makes (N above SCRYPT_N_MAX, r above 32, p
 * above 4) never matches and costs nothing: a row cannot make a login burn memory.
 * `decoyN`: the cost of the check run for an unknown user (the configured N).
 */
export async function verifyPassword(password: string, stored: string | null, decoyN = SCRYPT_N_DEFAULT): Promise<boolean> {
  let decoy = decoys.get(decoyN);
  if (stored === null && !decoy) decoys.set(decoyN, decoy = hashPassword(randomBytes(16).toString('hex'), decoyN));
  const parts = (stored ?? await decoy!).split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  if (!(N >= 2 && N <= SCRYPT_N_MAX && (N & (N - 1)) === 0 && r >= 1 && r <= 32 && p >= 1 && p <= 4)) return false;
  const salt = Buffer.from(parts[4]!, 'base64');
  const expected = Buffer.from(parts[5]!, 'base64');
  if (expected.length < 16 || expected.length > 64) return false;
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

/**
 * Whether a request's Host names this machine (localhost, 127.0.0.0/8, ::1): the
 * only hosts where the console's cookie goes without Secure by default, since
 * nothing between the browser and espf run can read it there.
 */
export function isLoopbackHost(host: string | undefined): boolean {
  if (!host) return false;
  const name = (host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d*$/, '')).toLowerCase();
  if (name === 'localhost' || name.endsWith('.localhost') || name === '::1') return true;
  return isIP(name) === 4 && name.startsWith('127.');
}

/**
 * Whether the session cookie gets Secure: `always` true (ESPF_CONSOLE_SECURE_COOKIE=1),
 * false (=0: only when a proxy says https), or unset (the default: unless the Host is loopback).
 */
export function secureCookieFor(always: boolean | undefined, host: string | undefined, forwardedProto: string | string[] | undefined): boolean {
  if (always === true || forwardedProto === 'https') return true;
  return always === undefined && !isLoopbackHost(host);
}

export function sessionCookie(value: string, maxAgeS: number, secure: boolean): string {
  return `${COOKIE}=${value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age=${Math.floor(maxAgeS)}${secure ? '; Secure' : ''}`;
}

export function clearedCookie(secure: boolean): string {
  return `${COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0${secure ? '; Secure' : ''}`;
}

/**
 * Failed logins per key, with growing delays. A login is counted as failed
 * the moment it starts (begin(), before any await), and forgiven when the
 * password was right (succeeded()): concurrent guesses cannot all pass the
 * check. After `attempts` failures within `window` of each other, each further
 * try waits 5 s, 10 s, 20 s, … (at most the window) from the end of the last. Keys that still hold a
 * delay are never dropped to make room; when the map is full of them, a new
 * key is refused (the caller answers 429).
 */
/** The first wait once the failures reach the limit; each further failure doubles it. */
export const FIRST_DELAY_MS = 5000;

export class LoginLimiter {
  private readonly entries = new Map<string, { failures: number; last: number }>();

  constructor(private readonly maxKeys = 100_000) {}

  /** Seconds until the key may try again, or 0. */
  blockedFor(key: string, attempts: number, windowMs: number, now = Date.now()): number {
    const e = this.entries.get(key);
    if (!e) return 0;
    if (now - e.last > windowMs) { this.entries.delete(key); return 0; }
    if (e.failures < attempts) return 0;
    const delay = Math.min(windowMs, FIRST_DELAY_MS * 2 ** Math.min(30, e.failures - attempts));
    const left = e.last + delay - now;
    return left > 0 ? Math.max(1, Math.ceil(left / 1000)) : 0;
  }

  /** Counts a try as failed now; false when the key cannot be counted (the map is full of delayed keys). */
  begin(key: string, attempts: number, windowMs: number, now = Date.now()): boolean {
    let e = this.entries.get(key);
    if (!e) {
      if (this.entries.size >= this.maxKeys && !this.makeRoom(attempts, windowMs, now)) return false;
      this.entries.set(key, e = { failures: 0, last: now });
    }
    e.failures++;
    e.last = now;
    return true;
  }

  /** The try begun for `key` failed: its delay counts from now (the end of the password check). */
  failed(key: string, now = Date.now()): void {
    const e = this.entries.get(key);
    if (e) e.last = now;
  }

  /** The try begun for `key` had the right password: its count is taken back (`forget`: the key's count is cleared). */
  succeeded(key: string, forget: boolean): void {
    const e = this.entries.get(key);
    if (!e) return;
    if (forget || e.failures <= 1) this.entries.delete(key); else e.failures--;
  }

  /** Failures counted for a key (tests, docs/console.md). */
  failures(key: string): number {
    return this.entries.get(key)?.failures ?? 0;
  }

  private makeRoom(attempts: number, windowMs: number, now: number): boolean {
    for (const [k, e] of this.entries) {
      if (now - e.last > windowMs || this.blockedFor(k, attempts, windowMs, now) === 0) {
        this.entries.delete(k);
        return true;
      }
    }
    return false;
  }
}

/**
 * The client's address: the peer's, or, when the peer is a trusted proxy, the
 * last address of X-Forwarded-For that is not itself a trusted proxy.
 */
export function clientAddress(peer: string | undefined, forwardedFor: string | string[] | undefined, trusted: readonly string[]): string {
  const own = plainAddress(peer ?? '');
  if (trusted.length === 0 || !own) return own;
  const list = new BlockList();
  for (const t of trusted) {
    const [addr, bits] = t.split('/');
    const type = isIP(addr!) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(addr!, type); else list.addSubnet(addr!, Number(bits), type);
  }
  const isTrusted = (a: string) => isIP(a) !== 0 && list.check(a, isIP(a) === 6 ? 'ipv6' : 'ipv4');
  if (!isTrusted(own)) return own;
  const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor ?? '').split(',').map((h) => plainAddress(h.trim())).filter(Boolean);
  for (let i = hops.length - 1; i >= 0; i--) if (!isTrusted(hops[i]!)) return hops[i]!;
  return hops[0] ?? own;
}

/** ::ffff:127.0.0.1 as 127.0.0.1. */
function plainAddress(a: string): string {
  return a.startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a;
}
