// espf.backfills and the backfill functions of sql/810_backfill.sql, for
// `espf backfill` (src/rules/backfill.ts). A backfill runs on one connection
// that holds its advisory lock for the whole run.
import { sql, type Queryable } from '@databases/pg';

/** A row of espf.backfills, numbers as numbers. */
export interface BackfillRow {
  id: number; rule: string; state: string; where_sql: string | null; batch_size: number;
  rows_done: number; rows_total: number | null; events: number; last_key: string | null;
  /** The one handler its events are for (`--handler`); null: every subscribed handler. */
  target_handler: string | null;
  /** How it was started: yield (the default), rate (at `rate_rows_s`) or fast; null: before migrations/0024_backfill_pace.sql. */
  pace: 'yield' | 'rate' | 'fast' | null;
  rate_rows_s: number | null;
}

/** Advisory lock key space of backfills (the second key is the backfill id). */
const BACKFILL_LOCK = 0x65737062; // 'espb'

const numberOrNull = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

/** The latest backfill of a rule that did not finish (running, interrupted or failed). */
export async function unfinishedBackfill(db: Queryable, rule: string): Promise<BackfillRow | undefined> {
  const [row] = await db.query(sql`
    SELECT id, rule, state, where_sql, batch_size, rows_done, rows_total, events, last_key, target_handler, pace, rate_rows_s FROM espf.backfills
     WHERE rule = ${rule} AND state IN ('running', 'interrupted', 'failed') ORDER BY id DESC LIMIT 1`);
  return row ? { ...row, id: Number(row.id), rows_done: Number(row.rows_done), rows_total: numberOrNull(row.rows_total), events: Number(row.events) } : undefined;
}

/**
 * Starts a backfill (espf.start_backfill checks the rule, the target handler and
 * the pace, and counts the rows): its id and rows_total.
 */
export async function startBackfill(db: Queryable, rule: string, where: string | null, batchSize: number, target: string | null,
  pace: 'yield' | 'rate' | 'fast', rateRowsS: number | null): Promise<{ id: number; rowsTotal: number | null }> {
  const [{ id }] = await db.query(sql`SELECT espf.start_backfill(${rule}, ${where}, ${batchSize}::int, ${target}::text, ${pace}::text, ${rateRowsS}::int) AS id`);
  const [t] = await db.query(sql`SELECT rows_total FROM espf.backfills WHERE id = ${id}`);
  return { id: Number(id), rowsTotal: numberOrNull(t.rows_total) };
}

/** A handler subscribed to the type of a rule: it would get the rule's backfilled events (a dispatcher passes them on). */
export interface BackfillReceiver { readonly handler: string; readonly kind: 'http' | 'dispatcher'; readonly enabled: boolean }

/** The type of a rule that can be backfilled now, and the handlers subscribed to it (espf.backfill_receivers raises why not). */
export async function backfillReceivers(db: Queryable, rule: string): Promise<{ eventType: string; receivers: BackfillReceiver[] }> {
  const [r] = await db.query(sql`SELECT event_type, receivers FROM espf.backfill_receivers(${rule})`);
  return { eventType: r.event_type, receivers: r.receivers };
}

/** Raises (one line) when the events of `rule` cannot go to `handler` only (espf.backfill_target_check). */
export async function backfillTargetCheck(db: Queryable, rule: string, handler: string): Promise<void> {
  await db.query(sql`SELECT espf.backfill_target_check(r, ${handler}) FROM espf.event_rules r WHERE r.name = ${rule}`);
}

/** Takes the backfill's session lock on this connection; false when another process holds it. */
export async function tryLockBackfill(db: Queryable, id: number): Promise<boolean> {
  const [{ locked }] = await db.query(sql`SELECT pg_try_advisory_lock(${BACKFILL_LOCK}, ${id}::int) AS locked`);
  return locked === true;
}

export async function unlockBackfill(db: Queryable, id: number): Promise<void> {
  await db.query(sql`SELECT pg_advisory_unlock(${BACKFILL_LOCK}, ${id}::int)`);
}

/** Checks (and parses) a rule once for a run: the type of its variables; undefined when the rule no longer exists. */
export async function backfillCheck(db: Queryable, rule: string): Promise<string | undefined> {
  const [checked] = await db.query(sql`SELECT espf.backfill_check(r) AS vtype FROM espf.event_rules r WHERE r.name = ${rule}`);
  return checked?.vtype;
}

/**
 * One batch of at most `limit` rows in its own transaction: the rows it did (0:
 * finished), the events it wrote, the last key, the milliseconds it took to lock
 * its rows (waits included), and the other client sessions running a statement
 * as it ended (-1: this role may not see them).
 */
export async function backfillBatch(db: Queryable, id: number, vtype: string, limit: number)
  : Promise<{ rows_done: number; events: number; last_key: string | null; lock_ms: number; active_sessions: number }> {
  const [r] = await db.tx((tx) => tx.query(sql`SELECT rows_done, events, last_key, lock_ms, active_sessions FROM espf.backfill_batch(${id}, ${vtype}, ${limit}::int)`));
  return { ...r, lock_ms: Number(r.lock_ms) };
}

/** Marks a backfill interrupted (resumable) or failed (with its error). */
export async function stopBackfill(db: Queryable, id: number, state: 'interrupted' | 'failed', error: string | null = null): Promise<void> {
  await db.query(sql`UPDATE espf.backfills SET state = ${state}, last_error = coalesce(${error}, last_error), updated_at = now() WHERE id = ${id}`);
}
