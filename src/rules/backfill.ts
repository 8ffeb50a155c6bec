import { sql, type Connection } from '@databases/pg';
import type { Db } from '../db/connect.ts';
import { EspfError } from '../errors.ts';

/**
 * `espf backfill`: a rule's event for rows that already exist, in batches of
 * short transactions (espf.backfill_batch in sql/810_backfill.sql), recorded in
 * espf.backfills and resumable from the last key done.
 */
export interface BackfillOptions {
  readonly rule: string;
  readonly where?: string;
  readonly batchSize: number;
  readonly resume: boolean;
  /** Called after every batch. */
  readonly onProgress?: (p: BackfillProgress) => void;
  /** When it returns true, the backfill stops after the current batch (Ctrl-C). */
  readonly stopRequested?: () => boolean;
}

export interface BackfillProgress {
  readonly id: number;
  readonly rule: string;
  readonly rowsDone: number;
  readonly rowsTotal: number;
  readonly events: number;
  readonly lastKey: string | null;
  readonly elapsedMs: number;
  readonly finished: boolean;
}

interface BackfillRow {
  id: number; rule: string; state: string; where_sql: string | null; batch_size: number;
  rows_done: number; rows_total: number | null; events: number; last_key: string | null;
}

/** Advisory lock key space of backfills (the second key is the backfill id). */
const BACKFILL_LOCK = 0x65737062; // 'espb'

async function unfinished(conn: Connection, rule: string): Promise<BackfillRow | undefined> {
  const [row] = await conn.query(sql`
    SELECT id, rule, state, where_sql, batch_size, rows_done, rows_total, events, last_key FROM espf.backfills
     WHERE rule = ${rule} AND state IN ('running', 'interrupted', 'failed') ORDER BY id DESC LIMIT 1`);
  return row ? { ...row, id: Number(row.id), rows_done: Number(row.rows_done), rows_total: row.rows_total === null ? null : Number(row.rows_total), events: Number(row.events) } : undefined;
}

const quoteArg = (s: string) => (/^[\w/.:-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

export async function runBackfill(db: Db, o: BackfillOptions): Promise<BackfillProgress> {
  return db.task(async (conn) => {
    let b = await unfinished(conn, o.rule);
    if (o.resume) {
      if (!b) throw new EspfError('ESPF_BACKFILL_REFUSED', `no unfinished backfill of rule '${o.rule}' to resume`);
      if (o.where !== undefined && o.where !== b.where_sql) {
        throw new EspfError('ESPF_BACKFILL_REFUSED',
          `backfill ${b.id} of rule '${o.rule}' runs with --where ${b.where_sql === null ? '(none)' : quoteArg(b.where_sql)}: resume it without --where`);
      }
    } else if (b) {
      throw new EspfError('ESPF_BACKFILL_REFUSED',
        `backfill ${b.id} of rule '${o.rule}' stopped at key ${b.last_key ?? '(none yet)'} (${b.rows_done} of ${b.rows_total ?? '?'} rows): `
        + `espf backfill ${quoteArg(o.rule)} --resume goes on from there (or UPDATE espf.backfills SET state = 'abandoned' WHERE id = ${b.id})`);
    } else {
      const [{ id }] = await conn.query(sql`SELECT espf.start_backfill(${o.rule}, ${o.where ?? null}, ${o.batchSize}) AS id`);
      b = { id: Number(id), rule: o.rule, state: 'running', where_sql: o.where ?? null, batch_size: o.batchSize, rows_done: 0, rows_total: null, events: 0, last_key: null };
      const [t] = await conn.query(sql`SELECT rows_total FROM espf.backfills WHERE id = ${b.id}`);
      b.rows_total = t.rows_total === null ? null : Number(t.rows_total);
    }
    const [{ locked }] = await conn.query(sql`SELECT pg_try_advisory_lock(${BACKFILL_LOCK}, ${b.id}::int) AS locked`);
    if (!locked) throw new EspfError('ESPF_BACKFILL_REFUSED', `backfill ${b.id} of rule '${o.rule}' is running in another process`);
    // Checked (and parsed) once for the run; each batch then only checks the type is still enabled.
    const [checked] = await conn.query(sql`SELECT espf.backfill_check(r) AS vtype FROM espf.event_rules r WHERE r.name = ${o.rule}`);
    if (!checked) throw new EspfError('ESPF_BACKFILL_REFUSED', `rule '${o.rule}' no longer exists`);
    const vtype: string = checked.vtype;
    const started = Date.now();
    let rowsDone = b.rows_done;
    let events = b.events;
    let lastKey = b.last_key;
    const progress = (finished: boolean): BackfillProgress => ({
      id: b!.id, rule: o.rule, rowsDone, rowsTotal: Math.max(b!.rows_total ?? 0, rowsDone), events, lastKey, elapsedMs: Date.now() - started, finished,
    });
    try {
      for (;;) {
        if (o.stopRequested?.()) {
          await conn.query(sql`UPDATE espf.backfills SET state = 'interrupted', updated_at = now() WHERE id = ${b.id}`);
          throw new EspfError('ESPF_INTERRUPTED',
            `backfill ${b.id} of rule '${o.rule}' interrupted at key ${lastKey ?? '(none yet)'} (${rowsDone} of ${b.rows_total ?? '?'} rows): `
            + `espf backfill ${quoteArg(o.rule)} --resume goes on from there`);
        }
        const [r] = await conn.tx((tx) => tx.query(sql`SELECT rows_done, events, last_key FROM espf.backfill_batch(${b!.id}, ${vtype})`));
        rowsDone += r.rows_done;
        events += r.events;
        lastKey = r.last_key;
        const finished = r.rows_done === 0;
        o.onProgress?.(progress(finished));
        if (finished) return progress(true);
      }
    } catch (err) {
      if (!(err instanceof EspfError && err.code === 'ESPF_INTERRUPTED')) {
        await conn.query(sql`UPDATE espf.backfills SET state = 'failed', last_error = ${(err as Error).message}, updated_at = now() WHERE id = ${b.id}`)
          .catch(() => undefined);
      }
      throw err;
    } finally {
      await conn.query(sql`SELECT pg_advisory_unlock(${BACKFILL_LOCK}, ${b.id}::int)`).catch(() => undefined);
    }
  });
}
