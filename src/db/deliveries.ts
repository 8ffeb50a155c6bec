// espf.event_deliveries on the sender's path: every statement the running
// sender sends about deliveries. The work is in SQL functions (sql/400_results.sql,
// sql/410_waiting_pages.sql).
import { sql } from '@databases/pg';
import type { Db } from './connect.ts';
import { first, q } from './query.ts';
import type { Shard } from './shards.ts';

/** A delivery that waits (PENDING or RETRY), with its event, as espf.waiting_page and espf.take_requeued return it. */
export interface WaitingRow {
  i_event: number; handler: string; state: string; event_type: string; variables: Record<string, unknown>;
  source_i_event: number | null; commit_lsn: string | null; attempts: number; urls_done: number;
  next_attempt_at: Date | null; committed_at: Date | null; first_attempt_at: Date | null;
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
}

/** Targets of these handlers that were down when last reported. */
export function downTargets(db: Db, handlers: readonly string[]): Promise<{ handler: string; url: string; since: Date; probes: number }[]> {
  return db.query(sql`SELECT handler, url, since, probes FROM espf.target_states WHERE NOT up AND handler = ANY(${handlers})`);
}

export async function noteTargetState(db: Db, t: TargetStateRow): Promise<void> {
  await db.query(sql`SELECT espf.note_target_state(${t.handler}, ${t.url}, ${t.instance}, ${t.up}, ${t.since}, ${t.failures},
                                                   ${t.probes}, ${t.nextProbeAt}, ${t.lastHttpStatus}, ${t.lastError})`);
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

/** Writes a batch of outcomes (a JSON array of rows) in one transaction. */
export async function recordDeliveries(db: Db, instance: string, rowsJson: string): Promise<void> {
  await db.query(sql`SELECT espf.record_deliveries(${instance}, ${rowsJson}::json)`);
}

/** Runs a dispatcher over source events in one transaction; the number of events it produced. */
export async function dispatch(db: Db, handler: string, iEvents: readonly number[], instance: string): Promise<number> {
  const [row] = await db.query(sql`SELECT espf.dispatch(${handler}, ${iEvents}::bigint[], ${instance}) AS produced`);
  return Number(row?.produced ?? 0);
}

/** How many deliveries wait (PENDING or RETRY) across every instance, and since when. */
export async function waitingSummary(db: Db): Promise<{ waiting: number; oldest: Date | null }> {
  const row = await first(db, q.selectFrom('espf.event_deliveries')
    .select((eb) => [
      eb.fn.countAll<number>().as('waiting'),
      eb.fn.min<Date | null>(eb.fn.coalesce('committed_at', 'created_at')).as('oldest'),
    ])
    .where('state', 'in', ['PENDING', 'RETRY']));
  return { waiting: Number(row?.waiting ?? 0), oldest: row?.oldest ?? null };
}

/** The start of a resend (now) and the `since` it gives as a time (null when `since` is neither a time nor an interval). */
export async function resendWindow(db: Db, since: string | null): Promise<{ started: Date; since: Date | null }> {
  const [t] = await db.query(sql`SELECT now() AS started, espf.resend_since(${since}) AS since`);
  return t;
}

export interface ResendCall {
  readonly events: readonly number[] | null; readonly account: number | null; readonly handler: string | null;
  readonly status: string | null; readonly since: Date | null; readonly until: Date;
}

/** One batch of espf.resend (sql/700_resend.sql): the deliveries re-queued (or, on a dry run, selected). */
export async function resendBatch(db: Db, c: ResendCall, maxRows: number, dryRun: boolean): Promise<number> {
  const [r] = await db.query(sql`
    SELECT espf.resend(i_events => ${c.events}::bigint[], i_account => ${c.account}::bigint,
                       handler => ${c.handler}::text, status => ${c.status}::text,
                       since => ${c.since}::timestamptz, until => ${c.until}::timestamptz,
                       max_rows => ${maxRows}::int, dry_run => ${dryRun}) AS n`);
  return Number(r.n);
}
