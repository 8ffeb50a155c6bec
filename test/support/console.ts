import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { sql } from '@databases/pg';
import { hashPassword, SCRYPT_N_MIN } from '../../src/console/auth.ts';
import type { Db } from '../../src/db/connect.ts';
import { createTestDatabase, type TestDatabase } from './database.ts';
import { eventually } from './receiver.ts';
import { provisioningLog } from '../../src/log/logger.ts';
import { startHttpServer } from '../../src/run/http-server.ts';
import { Sender } from '../../src/run/sender.ts';

export const ADMIN = { user: 'alice', password: 'correct horse battery' };
export const VIEWER = { user: 'victor', password: 'viewer password 1' };

/**
 * Console users alice (admin) and victor (viewer), and the console switched on. Their
 * hashes use the lowest cost espf accepts (ESPF_CONSOLE_SCRYPT_N=16384, SCRYPT_N_MIN),
 * as an operator may configure it: a login in the tests takes a tenth of the default's time.
 */
export async function enableConsole(db: Db): Promise<void> {
  await db.query(sql`INSERT INTO espf.console_users (name, role, password_hash) VALUES
    (${ADMIN.user}, 'admin', ${await hashPassword(ADMIN.password, SCRYPT_N_MIN)}),
    (${VIEWER.user}, 'viewer', ${await hashPassword(VIEWER.password, SCRYPT_N_MIN)})`);
  await db.query(sql`UPDATE espf.console SET enabled = true`);
}

/**
 * The HTTP server of espf run (console included) without streaming: a sender that is not started.
 * These tests change espf.console between two requests and expect the second to see it, so the
 * console reads its settings for every request (settings TTL 0); test/console-load.test.ts runs
 * the default.
 */
export async function startConsoleServer(db: Db, url: string, sender?: Sender) {
  const log = pino({ level: process.env.ESPF_TEST_LOG ?? 'silent' });
  const s = sender ?? new Sender({ db, url, instance: 'main', log, plog: provisioningLog(mkdtempSync(path.join(os.tmpdir(), 'espf-log-'))) });
  const server = await startHttpServer({ sender: s, db, log, port: 0, host: '127.0.0.1', consoleSettingsTtlMs: 0, consoleScryptN: SCRYPT_N_MIN });
  return { server, base: `http://127.0.0.1:${server.port}` };
}

/**
 * POSTs the login form as a browser does: a GET of the login page first for the
 * form's token (its cookie and hidden field), then the form with that cookie and
 * this console's Origin. `headers` are added (and win).
 */
export async function postLogin(base: string, fields: Record<string, string>, headers: Record<string, string> = {}): Promise<Response> {
  const page = await fetch(`${base}/console/login`);
  const cookie = (page.headers.get('set-cookie') ?? '').split(';')[0]!;
  const token = /name="_login" value="([^"]*)"/.exec(await page.text())?.[1] ?? '';
  return fetch(`${base}/console/login`, {
    method: 'POST', redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie, origin: base, ...headers },
    body: new URLSearchParams({ _login: token, ...fields }).toString(),
  });
}

/** A fresh test database with the console on (alice and victor) and its HTTP server. */
export async function consoleOnNewDatabase(): Promise<{ t: TestDatabase; base: string; close(): Promise<void> }> {
  const t = await createTestDatabase();
  await enableConsole(t.db);
  const s = await startConsoleServer(t.db, t.url);
  return { t, base: s.base, close: () => s.server.close() };
}

/** Requests as a browser makes them to the console at `base()`: a form POST, a login (cookie and CSRF token), a page. */
export function consoleHttp(base: () => string) {
  function form(p: string, body: Record<string, string> | URLSearchParams, headers: Record<string, string> = {}) {
    return fetch(`${base()}${p}`, {
      method: 'POST', redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body: new URLSearchParams(body).toString(),
    });
  }
  async function login(who: { user: string; password: string }): Promise<{ cookie: string; csrf: string }> {
    const r = await postLogin(base(), { user: who.user, password: who.password });
    if (r.status !== 303) throw new Error(`login of ${who.user}: ${r.status} ${await r.text()}`);
    const cookie = (r.headers.get('set-cookie') ?? '').split(';')[0]!;
    const page = await (await fetch(`${base()}/console/`, { headers: { cookie } })).text();
    return { cookie, csrf: /name="_csrf" value="([^"]*)"/.exec(page)![1]! };
  }
  async function get(cookie: string, p: string): Promise<{ status: number; text: string }> {
    const r = await fetch(`${base()}${p}`, { headers: { cookie }, redirect: 'manual' });
    return { status: r.status, text: await r.text() };
  }
  return { form, login, get };
}

/**
 * Holds `table` locked (ACCESS EXCLUSIVE) in a transaction of its own until
 * released: every read of it waits meanwhile (a slow or blocked console read).
 */
export async function holdLock(db: Db, table: 'espf.console' | 'espf.status_api' | 'billing.account'): Promise<{ release(): Promise<void> }> {
  let release!: () => void;
  let locked!: () => void;
  const isLocked = new Promise<void>((r) => { locked = r; });
  const held = db.tx(async (tx) => {
    await tx.query(sql`LOCK TABLE ${sql.ident(...table.split('.'))} IN ACCESS EXCLUSIVE MODE`);
    locked();
    await new Promise<void>((r) => { release = r; });
  });
  await Promise.race([isLocked, held]);
  return { release: async () => { release(); await held; } };
}

/**
 * The application_name of each connection of this database that waits on a lock
 * in a statement whose text contains `like` (once there is one; 15 s at most).
 */
export async function lockWaiters(db: Db, like: string, what: string): Promise<string[]> {
  const rows = await eventually(async () => {
    const r = await db.query(sql`SELECT application_name FROM pg_stat_activity
                                  WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE ${`%${like}%`}`);
    return r.length > 0 ? r : undefined;
  }, 15_000, what);
  return [...new Set(rows.map((w) => String(w.application_name)))];
}
