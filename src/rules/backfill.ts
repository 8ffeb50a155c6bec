import {
  backfillBatch, backfillCheck, startBackfill, stopBackfill, tryLockBackfill, unfinishedBackfill, unlockBackfill, type BackfillRow,
} from '../db/backfills.ts';
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

const quoteArg = (s: string) => (/^[\w/.:-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

export async function runBackfill(db: Db, o: BackfillOptions): Promise<BackfillProgress> {
  return db.task(async (conn) => {
    let b: BackfillRow | undefined = await unfinishedBackfill(conn, o.rule);
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
      const { id, rowsTotal } = await startBackfill(conn, o.rule, o.where ?? null, o.batchSize);
      b = { id, rule: o.rule, state: 'running', where_sql: o.where ?? null, batch_size: o.batchSize, rows_done: 0, rows_total: rowsTotal, events: 0, last_key: null };
    }
    if (!(await tryLockBackfill(conn, b.id))) throw new EspfError('ESPF_BACKFILL_REFUSED', `backfill ${b.id} of rule '${o.rule}' is running in another process`);
    // Checked (and parsed) once for the run; each batch then only checks the type is still enabled.
    const vtype = await backfillCheck(conn, o.rule);
    if (vtype === undefined) throw new EspfError('ESPF_BACKFILL_REFUSED', `rule '${o.rule}' no longer exists`);
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
          await stopBackfill(conn, b.id, 'interrupted');
          throw new EspfError('ESPF_INTERRUPTED',
            `backfill ${b.id} of rule '${o.rule}' interrupted at key ${lastKey ?? '(none yet)'} (${rowsDone} of ${b.rows_total ?? '?'} rows): `
            + `espf backfill ${quoteArg(o.rule)} --resume goes on from there`);
        }
        const r = await backfillBatch(conn, b.id, vtype);
        rowsDone += r.rows_done;
        events += r.events;
        lastKey = r.last_key;
        const finished = r.rows_done === 0;
        o.onProgress?.(progress(finished));
        if (finished) return progress(true);
      }
    } catch (err) {
      if (!(err instanceof EspfError && err.code === 'ESPF_INTERRUPTED')) {
        await stopBackfill(conn, b.id, 'failed', (err as Error).message).catch(() => undefined);
      }
      throw err;
    } finally {
      await unlockBackfill(conn, b.id).catch(() => undefined);
    }
  });
}
