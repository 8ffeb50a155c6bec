import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import type { Db } from '../db/connect.ts';
import { ACCOUNT_STATUSES, reportAccountStatus, statusApiSettings } from '../db/statuses.ts';
import { oneLine, sqlState, SQLSTATE } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import { resolveSecret, SECRET_ENV_PREFIX, SecretMissingError } from '../security/secret-ref.ts';
import { closeUnread, HttpRefusal as Refusal, readBody } from './http-helpers.ts';

/**
 * The status API (docs/operations.md, "The status API"): a receiver that provisions asynchronously reports
 *   POST /espf/v1/account/i/{i_account}/status
 *   Authorization: Bearer <espf.status_api.token>
 *   {"status": "OK"|"IN_PROGRESS"|"RETRY"|"FAILED", "group": "<handler or service group>", "message": "…"}
 * into espf.account_provisioning_statuses (one row per account and group).
 * Bad input gets a 4xx with {"error": "…"} and changes nothing.
 */
export const STATUS_PATH = /^\/espf\/v1\/account\/i\/([^/]*)\/status$/;
export const OPENAPI_PATH = '/espf/v1/openapi.json';
export const MAX_BODY_BYTES = 64 * 1024;
export const MAX_MESSAGE_CHARS = 4000;
export const MAX_GROUP_CHARS = 200;
/** The statuses a receiver may report: the one list of src/db/statuses.ts. */
export const STATUSES = ACCOUNT_STATUSES;

const OPENAPI = readFileSync(new URL('./status-api.openapi.json', import.meta.url), 'utf8');

export interface StatusApiOptions {
  readonly db: Db;
  readonly log: Logger;
}

function send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', ...headers });
  res.end(text);
}

/** Routes /espf/v1/…; returns false when the path is not the status API's. */
export function handleStatusApi(req: http.IncomingMessage, res: http.ServerResponse, path: string, opts: StatusApiOptions): boolean {
  if (!path.startsWith('/espf/')) return false;
  if (path === OPENAPI_PATH) {
    if (req.method !== 'GET' && req.method !== 'HEAD') send(res, 405, { error: `use GET for ${OPENAPI_PATH}` }, { allow: 'GET, HEAD' });
    else send(res, 200, OPENAPI, { 'cache-control': 'max-age=300' });
    return true;
  }
  const m = STATUS_PATH.exec(path);
  if (!m) {
    send(res, 404, { error: `not found: ${path.slice(0, 200)} (the status API is POST /espf/v1/account/i/{i_account}/status)` });
    return true;
  }
  if (req.method !== 'POST') {
    send(res, 405, { error: 'use POST to report a status' }, { allow: 'POST' });
    return true;
  }
  postStatus(req, m[1]!, opts).then(
    (row) => send(res, 200, row),
    (err: unknown) => {
      if (err instanceof Refusal) {
        // An answer before the whole body was read: close the connection rather than read the rest.
        send(res, err.status, { error: err.message }, { ...err.headers, ...closeUnread(req) });
        return;
      }
      opts.log.error({ err: oneLine(err) }, 'status API: request failed');
      send(res, 500, { error: 'internal error: see the espf run log' });
    },
  );
  return true;
}

interface StatusApiSettings { enabled: boolean; token: string | null }

async function settings(db: Db): Promise<StatusApiSettings> {
  try {
    return (await statusApiSettings(db)) ?? { enabled: false, token: null };
  } catch (err) {
    if (sqlState(err) === SQLSTATE.undefinedTable) {
      throw new Refusal(503, 'the status API is not installed in this database (espf.status_api is missing): run espf migrate');
    }
    throw err;
  }
}

/** The configured token: the column, or the environment variable it names (env:NAME). */
function resolveToken(s: StatusApiSettings, log: Logger): string {
  try {
    return resolveSecret(s.token, 'espf.status_api.token');
  } catch (err) {
    if (!(err instanceof SecretMissingError)) throw err;
    log.warn({ err: oneLine(err) }, 'status API: the environment variable espf.status_api.token names cannot be read; refusing requests');
    throw new Refusal(503, err.code === 'ESPF_SECRET_NOT_ALLOWED'
      ? `the status API token is not configured (espf.status_api.token must name a variable starting with ${SECRET_ENV_PREFIX})`
      : `the status API token is not configured (the environment variable named by espf.status_api.token is not set)`);
  }
}

/** At most one "wrong bearer token" warning per minute and log; the next one counts those not written. */
export const WRONG_TOKEN_WARN_MS = 60_000;
const wrongTokens = new WeakMap<Logger, { lastAt: number; suppressed: number }>();

function warnWrongToken(log: Logger, remote: string | undefined): void {
  const now = Date.now();
  const w = wrongTokens.get(log);
  if (w && now - w.lastAt < WRONG_TOKEN_WARN_MS) {
    w.suppressed++;
    return;
  }
  log.warn({ remote, more_since_last_warning: w?.suppressed ?? 0 }, 'status API: wrong bearer token (this warning is written at most once a minute)');
  wrongTokens.set(log, { lastAt: now, suppressed: 0 });
}

function sameSecret(a: string, b: string): boolean {
  const h = (s: string) => createHash('sha256').update(s).digest();
  return timingSafeEqual(h(a), h(b));
}

function authenticate(req: http.IncomingMessage, s: StatusApiSettings, log: Logger): void {
  if (!s.enabled) throw new Refusal(503, 'the status API is disabled (espf.status_api.enabled = false)');
  const expected = resolveToken(s, log);
  const challenge = { 'www-authenticate': 'Bearer realm="espf"' };
  const header = req.headers.authorization;
  if (!header) throw new Refusal(401, 'missing Authorization: Bearer <token>', challenge);
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) throw new Refusal(401, 'the Authorization header must be: Bearer <token>', challenge);
  if (expected.length === 0 || !sameSecret(m[1]!, expected)) {
    warnWrongToken(log, req.socket.remoteAddress);
    throw new Refusal(401, 'wrong bearer token', challenge);
  }
}

async function readJsonText(req: http.IncomingMessage): Promise<string> {
  return (await readBody(req, MAX_BODY_BYTES, `the body is larger than ${MAX_BODY_BYTES} bytes`)).toString('utf8');
}

export interface StatusReport {
  readonly status: (typeof STATUSES)[number];
  readonly group: string;
  readonly message: string | null;
}

/** Checks a parsed body; throws a 400 Refusal naming the field and the rule. */
export function validateReport(body: unknown): StatusReport {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new Refusal(400, 'the body must be a JSON object: {"status": …, "group": …, "message": …}');
  }
  const b = body as Record<string, unknown>;
  const unknown = Object.keys(b).filter((k) => !['status', 'group', 'message'].includes(k));
  if (unknown.length) throw new Refusal(400, `unknown field${unknown.length > 1 ? 's' : ''}: ${unknown.slice(0, 5).map((k) => JSON.stringify(k.slice(0, 50))).join(', ')} (allowed: status, group, message)`);
  if (b.status === undefined) throw new Refusal(400, `status is missing: one of ${STATUSES.join(', ')}`);
  if (typeof b.status !== 'string' || !(STATUSES as readonly string[]).includes(b.status)) {
    throw new Refusal(400, `status ${JSON.stringify(b.status).slice(0, 60)} is not one of ${STATUSES.join(', ')}`);
  }
  if (b.group === undefined || b.group === null) throw new Refusal(400, 'group is missing: the handler or service group the status is for');
  if (typeof b.group !== 'string' || b.group.trim() === '') throw new Refusal(400, 'group must be a non-empty string');
  const group = b.group;
  if ([...group].length > MAX_GROUP_CHARS) throw new Refusal(400, `group is longer than ${MAX_GROUP_CHARS} characters`);
  if (/[\u0000-\u001f\u007f]/.test(group)) throw new Refusal(400, 'group must not contain control characters');
  let message: string | null = null;
  if (b.message !== undefined && b.message !== null) {
    if (typeof b.message !== 'string') throw new Refusal(400, 'message must be a string (or null)');
    const chars = [...b.message].length;
    if (chars > MAX_MESSAGE_CHARS) throw new Refusal(400, `message is ${chars} characters long; at most ${MAX_MESSAGE_CHARS}`);
    if (b.message.includes('\u0000')) throw new Refusal(400, 'message must not contain NUL characters');
    message = b.message;
  }
  return { status: b.status as StatusReport['status'], group, message };
}

async function postStatus(req: http.IncomingMessage, rawAccount: string, opts: StatusApiOptions): Promise<Record<string, unknown>> {
  const s = await settings(opts.db);
  authenticate(req, s, opts.log);
  let account: string;
  try { account = decodeURIComponent(rawAccount); } catch { account = rawAccount; }
  if (!/^\d{1,16}$/.test(account) || Number(account) < 1 || !Number.isSafeInteger(Number(account))) {
    throw new Refusal(400, `i_account ${JSON.stringify(account.slice(0, 40))} is not a number (a positive whole number, the account's i_account)`);
  }
  const iAccount = Number(account);
  const text = await readJsonText(req);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new Refusal(400, `the body is not JSON: ${oneLine(err).slice(0, 200)}`);
  }
  const r = validateReport(parsed);
  const row = await reportAccountStatus(opts.db, iAccount, r.group, r.status, r.message);
  if (!row) throw new Refusal(404, `account ${iAccount} does not exist (no billing.account row with this i_account)`);
  opts.log.info({ i_account: iAccount, group: r.group, status: r.status }, 'status API: account status reported');
  return row;
}
