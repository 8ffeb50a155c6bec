/**
 * The pace of `espf backfill` (src/rules/backfill.ts, docs/dba.md "Backfill"):
 * after every batch, how many rows the next batch takes and how long to pause
 * before it, and why. Pure arithmetic: the caller measures and sleeps.
 *
 * - `yield` (the default) paces itself by what billing feels. Its measure is its
 *   own batch latency against the idle baseline of a batch of the same size (the
 *   fastest one seen): billing's transactions compete for the same CPU, WAL and
 *   account rows, so they make the batches slower. Its baseline is wrong when
 *   billing was never quiet since it began, so it also counts, like gh-ost's
 *   max-load, the sessions running a statement as a batch ends (pg_stat_activity,
 *   espf's own left out). AIMD on the share of the time it works (the duty): a
 *   batch slower than idle by more than SLOW_LIMIT, or with BUSY_SESSIONS
 *   sessions at work, multiplies the duty by DUTY_DECREASE (down to DUTY_MIN),
 *   any other adds DUTY_INCREASE (up to 1: full speed while billing is quiet).
 *   Under a billing load that saturates the machine nearly every batch is slow or
 *   sees sessions at work, so DUTY_MIN is the pace then: chosen with `make bench` (the backfill figure, docs/benchmarks.md) so
 *   that billing keeps at least 0.7 of its throughput. A batch that spent most of
 *   its time (LOCK_WAIT_SHARE) locking its rows and was slow waited for billing's
 *   row locks (and billing for its): it halves the batch size, down to MIN_BATCH,
 *   since a smaller batch holds its account locks for a shorter time; a batch
 *   that did not wait doubles it back, up to the batch size of the backfill.
 * - `rate` keeps to N rows per second: batches of at most a tenth of a second of
 *   rows, each started no earlier than the previous one's rows take at N a second
 *   after its start (a batch that was late is not made up for with a burst).
 * - `fast` runs batches of the backfill's size back to back (an off-peak run).
 */

export type Pace =
  | { readonly kind: 'yield' }
  | { readonly kind: 'fast' }
  | { readonly kind: 'rate'; readonly rowsPerS: number };

/** What a batch did: its rows, its latency, and the other sessions running a statement just after it (-1: unknown). */
export interface BatchSample {
  readonly rows: number;
  readonly ms: number;
  /** The part of `ms` its locking statement took (waits for row locks included). */
  readonly lockMs: number;
  readonly activeSessions: number;
  /** When it ended, in milliseconds since the first batch of this run began. */
  readonly atMs: number;
}

export interface PaceState {
  /** Rows the next batch may take. */
  readonly batchSize: number;
  /** Milliseconds to wait before the next batch. */
  readonly pauseMs: number;
  /** Share of the time the backfill works (yield; 1 otherwise). */
  readonly duty: number;
  /** The fastest latency per row seen for each batch size (yield): the idle baseline. */
  readonly baselineMsPerRow: ReadonlyMap<number, number>;
  /** The last batch's latency ÷ its baseline − 1 (0 before the first). */
  readonly slowdown: number;
  /** Rows done since the first batch of this run (rate). */
  readonly rows: number;
  /** Why it goes at this pace, for the progress line. */
  readonly reason: string;
}

/** The yielding pace's constants (docs/dba.md "Backfill" describes them). */
export const DUTY_START = 0.5;
export const DUTY_MIN = 1 / 3;
export const DUTY_INCREASE = 0.02;
export const DUTY_DECREASE = 0.7;
export const SLOW_LIMIT = 0.25;
export const BUSY_SESSIONS = 2;
export const LOCK_WAIT_SHARE = 0.5;
export const MIN_BATCH = 50;
/** A rate's batch: at most this share of a second of rows. */
export const RATE_BATCH_S = 0.1;

const pctText = (x: number) => `${Math.round(x * 100)}%`;
const signed = (x: number) => `${x >= 0 ? '+' : '−'}${pctText(Math.abs(x))}`;

/** The first batch of a pace, for a backfill of `batchSize` rows a batch. */
export function initialPace(pace: Pace, batchSize: number): PaceState {
  const base = { pauseMs: 0, baselineMsPerRow: new Map<number, number>(), slowdown: 0, rows: 0 };
  switch (pace.kind) {
    case 'fast': return { ...base, batchSize, duty: 1, reason: 'full speed (--fast)' };
    case 'rate': return { ...base, batchSize: rateBatch(pace.rowsPerS, batchSize), duty: 1, reason: `paced at --rate ${pace.rowsPerS}` };
    case 'yield': return { ...base, batchSize, duty: DUTY_START, reason: 'yielding: measuring the idle baseline' };
  }
}

const rateBatch = (rowsPerS: number, batchSize: number) => Math.max(1, Math.min(batchSize, Math.ceil(rowsPerS * RATE_BATCH_S)));

/**
 * The pace after a batch (`sample`) of the backfill whose batch size is
 * `batchSize`, given the state before it (the one that ran the batch).
 */
export function nextPace(pace: Pace, s: PaceState, sample: BatchSample, batchSize: number): PaceState {
  const rows = s.rows + sample.rows;
  switch (pace.kind) {
    case 'fast': return { ...s, rows, pauseMs: 0 };
    case 'rate': {
      // The next batch starts when this one's rows are due, counted from its start.
      const dueMs = sample.atMs - sample.ms + (sample.rows / pace.rowsPerS) * 1000;
      return { ...s, rows, batchSize: rateBatch(pace.rowsPerS, batchSize), pauseMs: Math.max(0, dueMs - sample.atMs) };
    }
    case 'yield': return yieldPace(s, sample, batchSize, rows);
  }
}

function yieldPace(s: PaceState, sample: BatchSample, batchSize: number, rows: number): PaceState {
  const size = s.batchSize;
  // The last batch, short (or empty), says nothing of billing: the next one finds no rows.
  if (sample.rows < size || sample.ms <= 0) return { ...s, rows, pauseMs: 0 };
  const perRow = sample.ms / sample.rows;
  const baselines = new Map(s.baselineMsPerRow);
  // A size not seen yet is compared with the nearest larger size seen (a smaller
  // batch costs no less per row, so this errs on the side of yielding).
  const known = baselines.get(size) ?? [...baselines].filter(([k]) => k >= size).sort((a, b) => a[0] - b[0])[0]?.[1];
  const slowdown = known === undefined ? 0 : perRow / known - 1;
  const slow = slowdown > SLOW_LIMIT;
  const busy = slow || sample.activeSessions >= BUSY_SESSIONS;
  const lockWait = slow && sample.lockMs > LOCK_WAIT_SHARE * sample.ms;
  // A batch sets the baseline of its size, unless it waited for locks (the baseline is the idle latency).
  if (!lockWait) baselines.set(size, Math.min(perRow, baselines.get(size) ?? Infinity));
  const duty = busy ? Math.max(DUTY_MIN, s.duty * DUTY_DECREASE) : Math.min(1, s.duty + DUTY_INCREASE);
  let next = size;
  if (lockWait) next = Math.max(Math.min(MIN_BATCH, batchSize), Math.floor(size / 2));
  else if (size < batchSize) next = Math.min(batchSize, size * 2);
  // Working `duty` of the time: after a batch of `ms`, a pause of ms × (1 − duty) ÷ duty.
  const pauseMs = duty >= 1 ? 0 : (sample.ms * (1 - duty)) / duty;
  const sessions = sample.activeSessions > 0 ? `, ${sample.activeSessions} other session${sample.activeSessions === 1 ? '' : 's'} active` : '';
  const latency = `batch latency ${signed(slowdown)} over idle${sessions}`;
  const reason = duty >= 1
    ? `full speed: billing does not slow it (${latency})`
    : `yielding: ${latency}; working ${pctText(duty)} of the time${lockWait ? `; it waited for row locks: batches of ${next} rows` : next < batchSize ? `, batches of ${next} rows` : ''}`;
  return { batchSize: next, pauseMs, duty, baselineMsPerRow: baselines, slowdown, rows, reason };
}
