import {
  backfillBatch, backfillCheck, backfillReceivers, backfillTargetCheck, startBackfill, stopBackfill, tryLockBackfill, unfinishedBackfill,
  unlockBackfill, type BackfillReceiver, type BackfillRow,
} from '../db/backfills.ts';
import type { Queryable } from '@databases/pg';
import type { Db } from '../db/connect.ts';
import { EspfError } from '../errors.ts';
import { initialPace, nextPace, type Pace, type PaceState } from './backfill-pace.ts';

/**
 * `espf backfill`: a rule's event for rows that already exist, in batches of
 * short transactions (espf.backfill_batch in sql/810_backfill.sql), recorded in
 * espf.backfills and resumable from the last key done.
 */
export interface BackfillOptions {
  readonly rule: string;
  readonly where?: string;
  /** Rows per batch (the most a batch takes at the yielding pace); undefined: DEFAULT_BATCH_SIZE for a new backfill, the stored one for --resume. */
  readonly batchSize?: number;
  /** `--rate N` or `--fast`; undefined: yield (src/rules/backfill-pace.ts) for a new backfill, the stored pace for --resume. */
  readonly pace?: Pace;
  readonly resume: boolean;
  /** `--handler NAME`: the events go to that handler only (espf.events.target_handler). */
  readonly handler?: string;
  /** `--all-handlers`: the events go to every subscribed handler. A new backfill needs this or `handler`. */
  readonly allHandlers?: boolean;
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
  /** The pace after this batch: the next batch's size, the pause before it, and why. */
  readonly pace: Pick<PaceState, 'batchSize' | 'pauseMs' | 'duty' | 'slowdown' | 'reason'>;
}

const quoteArg = (s: string) => (/^[\w/.:-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

export const DEFAULT_BATCH_SIZE = 1000;

/** The pace a backfill was started with (started before paces were stored: the default). */
const storedPace = (b: BackfillRow): Pace =>
  (b.pace === 'rate' && b.rate_rows_s !== null ? { kind: 'rate', rowsPerS: b.rate_rows_s } : { kind: b.pace === 'fast' ? 'fast' : 'yield' });

/** A pace as it is written on the command line ('' for the default). */
const paceArg = (p: Pace) => (p.kind === 'rate' ? `--rate ${p.rowsPerS}` : p.kind === 'fast' ? '--fast' : '');

/** The options a backfill was started with, as they are written on the command line. */
function storedOptions(b: BackfillRow): string {
  return [
    b.target_handler === null ? '--all-handlers' : `--handler ${quoteArg(b.target_handler)}`,
    ...(b.where_sql === null ? [] : [`--where ${quoteArg(b.where_sql)}`]),
    `--batch-size ${b.batch_size}`,
    paceArg(storedPace(b)),
  ].filter(Boolean).join(' ');
}

/** The options given with --resume that differ from the stored ones (empty: none). */
function differences(b: BackfillRow, o: BackfillOptions): string[] {
  const d: string[] = [];
  if (o.handler !== undefined && o.handler !== b.target_handler) d.push(`--handler ${quoteArg(o.handler)}`);
  if (o.allHandlers && b.target_handler !== null) d.push('--all-handlers');
  if (o.where !== undefined && o.where !== b.where_sql) d.push(`--where ${quoteArg(o.where)}`);
  if (o.batchSize !== undefined && o.batchSize !== b.batch_size) d.push(`--batch-size ${o.batchSize}`);
  if (o.pace !== undefined && paceArg(o.pace) !== paceArg(storedPace(b))) d.push(paceArg(o.pace) || 'the default pace');
  return d;
}

const receiverName = (r: BackfillReceiver) =>
  `${r.handler}${r.kind === 'dispatcher' ? ' (a dispatcher: and the handlers of what it produces)' : ''}${r.enabled ? '' : ' (disabled)'}`;

/**
 * Neither --handler nor --all-handlers: refused, naming the handlers that would
 * receive the events (one line; nothing is written).
 */
async function refuseWithoutTarget(db: Queryable, rule: string): Promise<never> {
  const { eventType, receivers } = await backfillReceivers(db, rule);
  const who = receivers.length === 0
    ? `no handler is subscribed to ${eventType} now`
    : `${eventType} would go to every handler subscribed to it: ${receivers.map(receiverName).join(', ')}`;
  throw new EspfError('ESPF_USAGE',
    `backfill of rule '${rule}': ${who}; name the one that needs the events with --handler NAME, or give --all-handlers`);
}

export async function runBackfill(db: Db, o: BackfillOptions): Promise<BackfillProgress> {
  if (o.handler !== undefined && o.allHandlers) throw new EspfError('ESPF_USAGE', '--handler and --all-handlers: give one of them');
  return db.task(async (conn) => {
    let b: BackfillRow | undefined = await unfinishedBackfill(conn, o.rule);
    if (o.resume) {
      if (!b) throw new EspfError('ESPF_BACKFILL_REFUSED', `no unfinished backfill of rule '${o.rule}' to resume`);
      const differ = differences(b, o);
      if (differ.length > 0) {
        throw new EspfError('ESPF_BACKFILL_REFUSED',
          `backfill ${b.id} of rule '${o.rule}' runs with ${storedOptions(b)}, not ${differ.join(' ')}: resume it without options, or with the same ones`);
      }
      // The target may have been removed, disabled or unsubscribed since it started.
      if (b.target_handler !== null) await backfillTargetCheck(conn, o.rule, b.target_handler);
    } else if (b) {
      throw new EspfError('ESPF_BACKFILL_REFUSED',
        `backfill ${b.id} of rule '${o.rule}' stopped at key ${b.last_key ?? '(none yet)'} (${b.rows_done} of ${b.rows_total ?? '?'} rows): `
        + `espf backfill ${quoteArg(o.rule)} --resume goes on from there (or UPDATE espf.backfills SET state = 'abandoned' WHERE id = ${b.id})`);
    } else {
      if (o.handler === undefined && !o.allHandlers) await refuseWithoutTarget(conn, o.rule);
      const batchSize = o.batchSize ?? DEFAULT_BATCH_SIZE;
      const target = o.handler ?? null;
      const pace = o.pace ?? { kind: 'yield' };
      const rate = pace.kind === 'rate' ? pace.rowsPerS : null;
      const { id, rowsTotal } = await startBackfill(conn, o.rule, o.where ?? null, batchSize, target, pace.kind, rate);
      b = {
        id, rule: o.rule, state: 'running', where_sql: o.where ?? null, batch_size: batchSize, rows_done: 0, rows_total: rowsTotal, events: 0, last_key: null,
        target_handler: target, pace: pace.kind, rate_rows_s: rate,
      };
    }
    if (!(await tryLockBackfill(conn, b.id))) throw new EspfError('ESPF_BACKFILL_REFUSED', `backfill ${b.id} of rule '${o.rule}' is running in another process`);
    // Checked (and parsed) once for the run; each batch then only checks the type is still enabled.
    const vtype = await backfillCheck(conn, o.rule);
    if (vtype === undefined) throw new EspfError('ESPF_BACKFILL_REFUSED', `rule '${o.rule}' no longer exists`);
    const started = Date.now();
    let rowsDone = b.rows_done;
    let events = b.events;
    let lastKey = b.last_key;
    const pace = storedPace(b);
    let paceState = initialPace(pace, b.batch_size);
    let paceStarted: number | undefined;  // performance.now() when the first batch began
    const progress = (finished: boolean): BackfillProgress => ({
      id: b!.id, rule: o.rule, rowsDone, rowsTotal: Math.max(b!.rows_total ?? 0, rowsDone), events, lastKey, elapsedMs: Date.now() - started, finished,
      pace: { batchSize: paceState.batchSize, pauseMs: paceState.pauseMs, duty: paceState.duty, slowdown: paceState.slowdown, reason: paceState.reason },
    });
    try {
      for (;;) {
        if (o.stopRequested?.()) {
          await stopBackfill(conn, b.id, 'interrupted');
          throw new EspfError('ESPF_INTERRUPTED',
            `backfill ${b.id} of rule '${o.rule}' interrupted at key ${lastKey ?? '(none yet)'} (${rowsDone} of ${b.rows_total ?? '?'} rows): `
            + `espf backfill ${quoteArg(o.rule)} --resume goes on from there`);
        }
        const t0 = performance.now();
        paceStarted ??= t0;
        const r = await backfillBatch(conn, b.id, vtype, paceState.batchSize);
        const t1 = performance.now();
        rowsDone += r.rows_done;
        events += r.events;
        lastKey = r.last_key;
        const finished = r.rows_done === 0;
        paceState = nextPace(pace, paceState, { rows: r.rows_done, ms: t1 - t0, lockMs: r.lock_ms, activeSessions: r.active_sessions, atMs: t1 - paceStarted }, b.batch_size);
        o.onProgress?.(progress(finished));
        if (finished) return progress(true);
        if (paceState.pauseMs > 0) await new Promise((resolve) => setTimeout(resolve, paceState.pauseMs));
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
