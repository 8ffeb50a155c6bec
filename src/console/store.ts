import type { Queryable } from '@databases/pg';
import type { Db } from '../db/connect.ts';
import { oneLine } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import { accountWithNames, findAccounts as billingFindAccounts } from '../db/billing.ts';
import {
  audited as dbAudited, consoleSession, consoleSettings, consoleUser, createConsoleSession, deleteConsoleSession,
  deliverySeries, insertAudit, overviewHandlers, overviewSlots, recentAudit as dbRecentAudit, type ConsoleSettings,
} from '../db/console.ts';
import {
  deleteSubscriptions, dispatcherSourceTypes, eventTypeNames, insertSubscriptions, listHandlers, lockHttpHandler,
  readHttpHandler as dbReadHttpHandler, setHttpHandlerColumns, stepsOfHandlers, switchHandler, switchTypes, type StepRow,
  deleteHttpHandlerEnv, handlerEnvs, readHttpHandlerEnv, setHttpHandlerEnvColumns,
} from '../db/config.ts';
import { accountDeliveries, checkTime, deliveryPage, type DeliveryFilter as DbDeliveryFilter } from '../db/deliveries.ts';
import { accountStatuses, failingStatusCounts } from '../db/statuses.ts';
import { DELIVERY_STATES } from '../db/delivery-states.ts';
import { sessionKey } from './auth.ts';
import { isEnvRef } from '../security/secret-ref.ts';
import { resendFiltered } from '../db/resend.ts';
import { redactUrl } from '../security/redact.ts';
import { FieldError } from './fields.ts';

/** The console's reads and writes of the database. Every change goes through `audited`. */

export type Role = 'viewer' | 'admin';

export type { ConsoleSettings } from '../db/console.ts';

export function readSettings(db: Db): Promise<ConsoleSettings | null> {
  return consoleSettings(db);
}

export function findUser(db: Db, name: string): Promise<{ name: string; role: Role; password_hash: string } | null> {
  return consoleUser(db, name);
}

export interface Session { readonly user: string; readonly role: Role; readonly csrf: string }

/** A session ends after this long without a request (docs/console.md, "Security"). */
export const SESSION_IDLE_S = 30 * 60;

/** A new session; the user's earlier sessions end. */
export function createSession(db: Db, id: string, user: string, csrf: string, ttlS: number): Promise<void> {
  return createConsoleSession(db, sessionKey(id), user, csrf, ttlS, SESSION_IDLE_S);
}

/** The session, if it has not expired; the request counts as activity (the idle timeout starts again). */
export function findSession(db: Db, id: string): Promise<Session | null> {
  return consoleSession(db, sessionKey(id), SESSION_IDLE_S);
}

export function deleteSession(db: Db, id: string): Promise<void> {
  return deleteConsoleSession(db, sessionKey(id));
}

/** Columns of espf.http_handlers whose values are never sent to the browser nor written to the audit. */
export const SECRET_COLUMNS = ['basic_auth_key', 'custom_auth_credentials', 'signature_auth_key'] as const;

/** A row for the audit: secret values replaced by "(set)" (an env:NAME reference is kept), a URL's password by ***. */
export function maskSecrets(row: Record<string, unknown> | null | undefined): Record<string, unknown> | null {
  if (!row) return null;
  const out = { ...row };
  if (Array.isArray(out.url)) out.url = out.url.map((u) => (typeof u === 'string' ? redactUrl(u) : u));
  for (const c of SECRET_COLUMNS) {
    const v = out[c];
    if (typeof v === 'string' && !isEnvRef(v)) out[c] = '(set)';
  }
  return out;
}

/**
 * Runs a change and its audit row in one transaction: `change` returns the row
 * before and after; nothing is recorded when the database refuses the change.
 */
export function audited<T>(db: Db, user: string, action: string, target: string,
  change: (tx: Queryable) => Promise<{ before: unknown; after: unknown; result: T }>): Promise<T> {
  return dbAudited(db, user, action, target, change);
}

/** One row of espf.console_audit: something done that changed no configuration row (a test event, a login). */
export function audit(db: Queryable, user: string, action: string, target: string | null, before: unknown, after: unknown): Promise<void> {
  return insertAudit(db, user, action, target, before, after);
}

/**
 * A refused request of a logged-in user, in the audit: a viewer's change (403), a
 * form without its CSRF token or from another Origin (403), a change the database
 * refused (422). `reason` is the answer's one line (the database never quotes a
 * secret in it); a failure to write the row is logged, never the request's answer.
 */
export async function auditRefusal(db: Db, log: Logger, user: string, path: string, status: number, reason: string): Promise<void> {
  try {
    await insertAudit(db, user, 'refused', path.slice(0, 200), null, { status, reason: reason.slice(0, 500) });
  } catch (err) {
    log.warn({ err: oneLine(err), user, path }, 'console: the refusal could not be audited');
  }
}

/**
 * The origins (scheme, host, port) `urls` adds to `was`: a stored secret is
 * never sent to one of them until it is typed again (docs/console.md).
 */
export function newOrigins(was: unknown, urls: unknown): string[] {
  const origins = (v: unknown) => new Set((Array.isArray(v) ? v : []).flatMap((u) => {
    try {
      const url = new URL(String(u));
      return url.protocol === 'http:' || url.protocol === 'https:' ? [url.origin] : []; // the database refuses the others
    } catch { return []; }
  }));
  const old = origins(was);
  return [...origins(urls)].filter((o) => !old.has(o));
}

// ── configuration changes (the same row changes as the espf CLI) ────────────

export async function setTypeEnabled(db: Db, user: string, type: string, enabled: boolean): Promise<boolean> {
  return audited(db, user, enabled ? 'type enable' : 'type disable', type, async (tx) => {
    const [old] = await switchTypes(tx, type, enabled);
    if (!old) throw new NotFound(`unknown event type ${type}`);
    return { before: { name: old.name, enabled: old.was }, after: { name: old.name, enabled }, result: old.was !== enabled };
  });
}

export async function setHandlerEnabled(db: Db, user: string, handler: string, enabled: boolean): Promise<boolean> {
  return audited(db, user, enabled ? 'handler enable' : 'handler disable', handler, async (tx) => {
    const old = await switchHandler(tx, handler, enabled);
    if (!old) throw new NotFound(`unknown handler ${handler}`);
    return { before: { name: old.name, enabled: old.was }, after: { name: old.name, enabled }, result: old.was !== enabled };
  });
}

export async function setSubscribed(db: Db, user: string, handler: string, type: string, on: boolean): Promise<boolean> {
  return audited(db, user, on ? 'handler sub' : 'handler unsub', `${handler} ${type}`, async (tx) => {
    const rows = on ? await insertSubscriptions(tx, handler, [type]) : await deleteSubscriptions(tx, handler, [type]);
    const row = rows[0] ?? null;
    return { before: on ? null : row, after: on ? row : null, result: row !== null };
  });
}

export async function readHttpHandler(db: Queryable, handler: string): Promise<Record<string, unknown> | null> {
  return (await dbReadHttpHandler(db, handler)) ?? null;
}

/** The request steps of one http handler (espf.http_steps), in order. */
export function httpSteps(db: Queryable, handler: string): Promise<StepRow[]> {
  return stepsOfHandlers(db, [handler]);
}

/** Updates the given columns of one espf.http_handlers row (names checked by the caller against the known columns). */
export async function updateHttpHandler(db: Db, user: string, handler: string, values: Record<string, unknown>): Promise<boolean> {
  return audited(db, user, 'http handler update', handler, async (tx) => {
    const old = await lockHttpHandler(tx, handler);
    if (!old) throw new NotFound(`unknown http handler ${handler}`);
    if (values.url !== undefined) {
      const added = newOrigins(old.url, values.url);
      const kept = SECRET_COLUMNS.filter((c) => old[c] !== null && old[c] !== '' && values[c] === undefined);
      if (added.length > 0 && kept.length > 0) {
        throw new FieldError('url', `espf.http_handlers.url: ${added.join(', ')} is a new host for the stored ${kept.join(', ')}: `
          + 'type the secret again (or clear it) in the same save, so that a stored secret never goes to a host it was not typed for');
      }
    }
    if (Object.keys(values).length === 0) return { before: maskSecrets(old), after: maskSecrets(old), result: false };
    const row = await setHttpHandlerColumns(tx, handler, values);
    return { before: maskSecrets(old), after: maskSecrets(row), result: true };
  });
}

/** The environments of an http handler with a row of espf.http_handler_envs. */
export function handlerEnvList(db: Queryable, handler: string): Promise<number[]> {
  return handlerEnvs(db, handler);
}

/** An environment's row as stored (null where inherited) and its merged settings; null when it has none. */
export async function readHttpHandlerEnvRow(db: Queryable, handler: string, env: number)
  : Promise<{ own: Record<string, unknown>; merged: Record<string, unknown> } | null> {
  return (await readHttpHandlerEnv(db, handler, env)) ?? null;
}

/**
 * Sets the given columns of an environment's row of espf.http_handler_envs
 * (made when missing; null inherits), audited. As for the default row, a URL
 * of a new host needs the secrets the environment is delivered with typed
 * again (or inherited from nothing) in the same save.
 */
export async function updateHttpHandlerEnv(db: Db, user: string, handler: string, env: number, values: Record<string, unknown>): Promise<boolean> {
  return audited(db, user, 'http handler environment update', `${handler} i_env ${env}`, async (tx) => {
    const def = await lockHttpHandler(tx, handler);
    if (!def) throw new NotFound(`unknown http handler ${handler}`);
    const old = await readHttpHandlerEnv(tx, handler, env);
    const merged = old?.merged ?? def;
    if (Array.isArray(values.url)) {
      const added = newOrigins(merged.url, values.url);
      const kept = SECRET_COLUMNS.filter((c) => merged[c] !== null && merged[c] !== '' && values[c] === undefined);
      if (added.length > 0 && kept.length > 0) {
        throw new FieldError('url', `espf.http_handler_envs.url: ${added.join(', ')} is a new host for the ${kept.join(', ')} this environment is delivered with: `
          + 'type the secret again in the same save, so that a stored secret never goes to a host it was not typed for');
      }
    }
    if (old && Object.keys(values).length === 0) return { before: maskSecrets(old.own), after: maskSecrets(old.own), result: false };
    const row = await setHttpHandlerEnvColumns(tx, handler, env, values);
    return { before: maskSecrets(old?.own), after: maskSecrets(row), result: true };
  });
}

/** Drops an environment's row (its events use the default row again), audited: whether there was one. */
export function deleteHttpHandlerEnvRow(db: Db, user: string, handler: string, env: number): Promise<boolean> {
  return audited(db, user, 'http handler environment drop', `${handler} i_env ${env}`, async (tx) => {
    const old = await readHttpHandlerEnv(tx, handler, env);
    const dropped = await deleteHttpHandlerEnv(tx, handler, env);
    return { before: maskSecrets(old?.own), after: null, result: dropped };
  });
}

/** espf.resend of the given deliveries, audited; returns the rows re-queued. */
export async function resend(db: Db, user: string, keys: readonly { i_event: number; handler: string }[]): Promise<number> {
  const byHandler = new Map<string, number[]>();
  for (const k of keys) {
    let list = byHandler.get(k.handler);
    if (!list) byHandler.set(k.handler, list = []);
    list.push(k.i_event);
  }
  let n = 0;
  for (const [handler, events] of byHandler) {
    n += await audited(db, user, 'resend', handler, async (tx) => {
      const count = await resendFiltered(tx, {
        events, handler, account: null, status: null, since: null, until: null, type: null, createdSince: null, createdUntil: null,
      }, events.length, false);
      return { before: { handler, i_events: events }, after: { requeued: count }, result: count };
    });
  }
  return n;
}

export class NotFound extends Error {
  readonly code = 'ESPF_CONSOLE_NOT_FOUND';
}

// ── reads ────────────────────────────────────────────────────────────────────

export async function overview(db: Db) {
  const [handlers, slots, series, statuses] = await Promise.all([
    overviewHandlers(db), overviewSlots(db), deliverySeries(db, 6, 36), failingStatusCounts(db)]);
  return { handlers, slots, series, statuses };
}

export function findAccounts(db: Db, q: string) {
  return billingFindAccounts(db, q);
}

export async function accountTimeline(db: Db, iAccount: number, limit = 200) {
  const [account, deliveries, statuses] = await Promise.all([
    accountWithNames(db, iAccount), accountDeliveries(db, iAccount, limit), accountStatuses(db, iAccount)]);
  return { account, deliveries, statuses };
}

export interface DeliveryFilter {
  readonly handler?: string;
  readonly type?: string;
  readonly state?: string;
  readonly since?: string;   // created at or after (a time PostgreSQL reads)
  readonly until?: string;   // created before
}

/** The states the deliveries page filters on: every delivery state (src/db/delivery-states.ts). */
export const STATES = DELIVERY_STATES;

/**
 * One page, newest event first; `after` is the last (i_event, handler) of the
 * previous page. The keys are found first (for FAILED, an index-only scan of
 * event_deliveries_failed_idx, whose rows carry created_at and event_type), then
 * their rows are read.
 */
export function deliveries(db: Db, f: DeliveryFilter, after: { i_event: number; handler: string } | null, limit: number) {
  // f.state was checked against STATES by the page (src/console/pages/deliveries.ts).
  return deliveryPage(db, f as DbDeliveryFilter, after, limit);
}

export async function names(db: Db): Promise<{ handlers: { name: string; kind: string }[]; types: string[] }> {
  const [handlers, types] = await Promise.all([listHandlers(db, 'name'), eventTypeNames(db)]);
  return { handlers: handlers.map((h) => ({ name: h.name, kind: h.kind })), types };
}

export function recentAudit(db: Db, limit = 20) {
  return dbRecentAudit(db, limit);
}

export async function handlerRows(db: Db): Promise<{ handler: string; name: string; kind: string; enabled: boolean; instance: string }[]> {
  return (await listHandlers(db, 'kind')).map((h) => ({ handler: h.name, name: h.name, kind: h.kind, enabled: h.enabled, instance: h.instance }));
}

export function consumes(db: Db, handler: string): Promise<string[]> {
  return dispatcherSourceTypes(db, handler);
}

/** Throws the database's error when PostgreSQL cannot read `v` as a time. */
export function checkTimestamp(db: Db, v: string): Promise<void> {
  return checkTime(db, v);
}
