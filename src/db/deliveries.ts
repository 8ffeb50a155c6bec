// espf.event_deliveries (and espf.target_states): every statement about
// deliveries. First the sender's path, one statement per call, the work in SQL
// functions (sql/400_results.sql, sql/410_waiting_pages.sql); then the
// backlog, resend (sql/700_resend.sql), and the reads of the console.
import { sql, type Queryable, type SQLQuery } from '@databases/pg';
import { numberArray, textArray } from './array-literal.ts';
import type { Db } from './connect.ts';
import { WAITING_STATES, type DeliveryState } from './delivery-states.ts';
import type { Row } from './schema.ts';
import type { Shard } from './shards.ts';

/** A delivery that waits (PENDING or RETRY), with its event, as espf.waiting_page and espf.take_requeued return it. */
export interface WaitingRow {
  i_event: number; handler: string; state: string; event_type: string; variables: Record<string, unknown>;
  source_i_event: number | null; commit_lsn: string | null; attempts: number; urls_done: number;
  next_attempt_at: Date | null; committed_at: Date | null; first_attempt_at: Date | null;
  /** Request steps (docs/handlers.md): how many are done, and their answers (null: none). */
  steps_done: number; step_answers: unknown;
}

/** Takes (clears the mark of) at most `maxRows` deliveries of these handlers marked requeued (of the events of this shard), in stream order. */
export function takeRequeued(db: Db, handlers: readonly string[], shard: Shard, maxRows = 10_000): Promise<WaitingRow[]> {
  return db.query(sql`SELECT * FROM espf.take_requeued(${handlers}, ${maxRows}, ${shard.k}, ${shard.n})`);
}

/** Where a page of waiting deliveries starts: after this (commit position, i_event); null: from the first. */
export interface PageCursor { readonly lsn: string | null; readonly iEvent: number }

/** The next page of one handler's waiting deliveries of this shard's events, in stream order (sql/410_waiting_pages.sql). */
export function waitingPage(db: Db, handler: string, shard: Shard, after: PageCursor, maxRows: number): Promise<WaitingRow[]> {
  return db.query(sql`SELECT * FROM espf.waiting_page(${handler}, ${after.lsn}::pg_lsn, ${after.iEvent}, ${maxRows}, ${shard.k}, ${shard.n})`);
}

/** The last waiting delivery of a handler (of this shard's events) in stream order (null: none waits, or only rows without a commit position, which come first). */
export async function lastWaiting(db: Db, handler: string, shard: Shard): Promise<PageCursor | null> {
  const [r] = await db.query(sql`SELECT lsn::text AS lsn, i_event FROM espf.last_waiting(${handler}, ${shard.k}, ${shard.n})`);
  return r ? { lsn: r.lsn, iEvent: Number(r.i_event) } : null;
}

/** The circuit breaker state of one target (espf.target_states), as the sender last saw it. */
export interface TargetStateRow {
  readonly handler: string; readonly url: string; readonly instance: string; readonly up: boolean; readonly since: Date;
  readonly failures: number; readonly probes: number; readonly nextProbeAt: Date | null;
  readonly lastHttpStatus: number | null; readonly lastError: string | null;
  /** The environment whose settings the target belongs to (espf.http_handler_envs); null: the default row. */
  readonly iEnv?: number | null;
}

/** Targets of these handlers that were down when last reported. */
export function downTargets(db: Db, handlers: readonly string[]): Promise<{ handler: string; url: string; i_env: number | null; since: Date; probes: number }[]> {
  return db.query(sql`SELECT handler, url, i_env, since, probes FROM espf.target_states WHERE NOT up AND handler = ANY(${handlers})`);
}

export async function noteTargetState(db: Db, t: TargetStateRow): Promise<void> {
  await db.query(sql`SELECT espf.note_target_state(${t.handler}, ${t.url}, ${t.instance}, ${t.up}, ${t.since}, ${t.failures},
                                                   ${t.probes}, ${t.nextProbeAt}, ${t.lastHttpStatus}, ${t.lastError}, ${t.iEnv ?? null})`);
}

/** The last commit position with an outcome of this instance: a replay up to it may meet recorded deliveries. */
export async function lastRecordedLsn(db: Db, instance: string): Promise<string | null> {
  const [h] = await db.query(sql`SELECT max(commit_lsn)::text AS lsn FROM espf.event_deliveries WHERE instance = ${instance}`);
  return h?.lsn ?? null;
}

/** `i_event:handler` of every delivery already recorded for these events. */
export async function recordedDeliveries(db: Db, iEvents: readonly number[]): Promise<Set<string>> {
  const rows: { i_event: number; handler: string }[] = await db.query(sql`
    SELECT i_event, handler FROM espf.event_deliveries WHERE i_event = ANY(${iEvents}::bigint[])`);
  return new Set(rows.map((r) => `${r.i_event}:${r.handler}`));
}

/** One outcome as the record stage writes it: the columns of its row of espf.event_deliveries (times as epoch milliseconds). */
export interface DeliveryRecord {
  i_event: number; handler: string; state: DeliveryState; event_type: string; order_key: string;
  i_account: number | null; commit_lsn: string | null; attempts: number; urls_done: number;
  last_http_status: number | null; last_error: string | null;
  next_attempt_at: number | null; committed_at: number | null; first_attempt_at: number | null;
  last_attempt_at: number | null; finished_at: number | null;
  steps_done: number; step_answers: readonly unknown[] | null;
  /** The event's created_at: its identity with i_event, checked before the outcome is written (sql/400_results.sql; a row's committed_at when absent). */
  created_at: number | null;
  /** No row of this delivery exists yet (Item.fresh): written by a plain INSERT, not INSERT … ON CONFLICT (sql/400_results.sql). */
  fresh?: boolean;
}

/**
 * Writes a batch of outcomes (at most one per (i_event, handler), in the order
 * they were reported) in one transaction, as one array per column; the i_event
 * of those dropped because their event is another now (sql/400_results.sql).
 */
export async function recordDeliveries(db: Db, instance: string, records: readonly DeliveryRecord[]): Promise<number[]> {
  // Each column goes as one array literal (src/db/array-literal.ts); step_answers as
  // the JSON text of each delivery's answers, read as jsonb[].
  const num = (f: (r: DeliveryRecord) => number | null) => numberArray(records.map(f));
  const text = (f: (r: DeliveryRecord) => string | null, recur = false) => textArray(records.map(f), recur);
  const [row] = await db.query(sql`
    SELECT espf.record_deliveries(${instance}, true, ${num((r) => r.i_event)}::bigint[], ${text((r) => r.handler, true)}::text[],
             ${text((r) => r.state, true)}::text[], ${text((r) => r.event_type, true)}::text[], ${text((r) => r.order_key)}::text[],
             ${num((r) => r.i_account)}::bigint[], ${text((r) => r.commit_lsn)}::pg_lsn[], ${num((r) => r.attempts)}::int[],
             ${num((r) => r.urls_done)}::int[], ${num((r) => r.last_http_status)}::int[], ${text((r) => r.last_error)}::text[],
             ${num((r) => r.next_attempt_at)}::float8[], ${num((r) => r.committed_at)}::float8[], ${num((r) => r.first_attempt_at)}::float8[],
             ${num((r) => r.last_attempt_at)}::float8[], ${num((r) => r.finished_at)}::float8[], ${num((r) => r.created_at)}::float8[],
             ${num((r) => r.steps_done)}::int[],
             ${text((r) => (r.step_answers == null ? null : JSON.stringify(r.step_answers)))}::jsonb[],
             ${freshArray(records)}::boolean[]) AS stale`);
  return (row.stale as (string | number)[]).map(Number);
}

/** The `fresh` column of a batch as an array literal; null when no record is fresh. */
function freshArray(records: readonly DeliveryRecord[]): string | null {
  let any = false;
  for (let i = 0; i < records.length && !any; i++) any = records[i]!.fresh === true;
  if (!any) return null;
  let out = '{';
  for (let i = 0; i < records.length; i++) out += (i === 0 ? '' : ',') + (records[i]!.fresh === true ? 't' : 'f');
  return `${out}}`;
}

/** Runs a dispatcher over source events in one transaction; the number of events it produced. */
export async function dispatch(db: Db, handler: string, iEvents: readonly number[], instance: string): Promise<number> {
  const [row] = await db.query(sql`SELECT espf.dispatch(${handler}, ${iEvents}::bigint[], ${instance}) AS produced`);
  return Number(row?.produced ?? 0);
}

/** How many deliveries wait (PENDING or RETRY) across every instance, and since when. */
export async function waitingSummary(db: Db): Promise<{ waiting: number; oldest: Date | null }> {
  const [row] = await db.query(sql`
    SELECT count(*) AS waiting, min(coalesce(committed_at, created_at)) AS oldest
      FROM espf.event_deliveries WHERE state = ANY(${WAITING_STATES}::text[])`);
  return { waiting: Number(row?.waiting ?? 0), oldest: row?.oldest ?? null };
}

// ── reads of the console (src/console/) ─────────────────────────────────────

export type DeliveryRow = Pick<Row<'espf.event_deliveries'>, 'i_event' | 'handler' | 'state' | 'event_type' | 'attempts' | 'urls_done'
  | 'last_http_status' | 'last_error' | 'next_attempt_at' | 'committed_at' | 'created_at' | 'first_attempt_at' | 'last_attempt_at' | 'finished_at'>
  & Pick<Row<'espf.events'>, 'variables' | 'source_i_event'>;

/** The latest `limit` deliveries of an account with their events' variables, newest first. */
export function accountDeliveries(db: Queryable, iAccount: number, limit: number): Promise<DeliveryRow[]> {
  return db.query(sql`
    SELECT d.i_event, d.handler, d.state, d.event_type, d.attempts, d.urls_done, d.last_http_status, d.last_error,
           d.next_attempt_at, d.committed_at, d.created_at, d.first_attempt_at, d.last_attempt_at, d.finished_at,
           e.variables, e.source_i_event
      FROM (SELECT * FROM espf.event_deliveries WHERE i_account = ${iAccount} ORDER BY i_event DESC LIMIT ${limit}) d
      LEFT JOIN espf.events e ON e.i_event = d.i_event
     ORDER BY d.i_event DESC, d.handler`);
}

/** Which deliveries a list shows; every field optional. */
export interface DeliveryFilter {
  readonly handler?: string;
  readonly type?: string;
  readonly state?: DeliveryState;
  readonly since?: string;   // created at or after (a time PostgreSQL reads, see checkTime)
  readonly until?: string;   // created before
}

/** A delivery's key: (i_event, handler). */
export interface DeliveryKey { readonly i_event: number; readonly handler: string }

function filterSql(f: DeliveryFilter): SQLQuery {
  const c: SQLQuery[] = [sql`true`];
  if (f.handler) c.push(sql`d.handler = ${f.handler}`);
  if (f.type) c.push(sql`d.event_type = ${f.type}`);
  if (f.state) c.push(sql`d.state = ${f.state}`);
  if (f.since) c.push(sql`d.created_at >= ${f.since}::timestamptz`);
  if (f.until) c.push(sql`d.created_at < ${f.until}::timestamptz`);
  return sql.join(c, ' AND ');
}

export type DeliveryListRow = Pick<Row<'espf.event_deliveries'>, 'i_event' | 'handler' | 'state' | 'event_type' | 'i_account' | 'attempts'
  | 'last_http_status' | 'last_error' | 'created_at' | 'last_attempt_at' | 'finished_at'>;

/**
 * One page, newest event first; `after` is the last key of the previous page.
 * The keys are found first (for FAILED, an index-only scan of
 * event_deliveries_failed_idx, whose rows carry created_at and event_type),
 * then their rows are read.
 */
export function deliveryPage(db: Queryable, f: DeliveryFilter, after: DeliveryKey | null, limit: number): Promise<DeliveryListRow[]> {
  const key = after ? sql`AND (d.i_event, d.handler) < (${after.i_event}, ${after.handler})` : sql``;
  return db.query(sql`
    WITH page AS (
      SELECT d.i_event, d.handler FROM espf.event_deliveries d
       WHERE ${filterSql(f)} ${key}
       ORDER BY d.i_event DESC, d.handler DESC
       LIMIT ${limit})
    SELECT d.i_event, d.handler, d.state, d.event_type, d.i_account, d.attempts, d.last_http_status, d.last_error,
           d.created_at, d.last_attempt_at, d.finished_at
      FROM page p JOIN espf.event_deliveries d ON d.i_event = p.i_event AND d.handler = p.handler
     ORDER BY d.i_event DESC, d.handler DESC`);
}

/** Throws the database's error when PostgreSQL cannot read `v` as a time (a filter's `since`, `until`). */
export async function checkTime(db: Queryable, v: string): Promise<void> {
  await db.query(sql`SELECT ${v}::timestamptz AS t`);
}
