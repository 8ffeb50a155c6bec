import { sql, type SQLQuery } from '@databases/pg';
import { connect, type Db } from '../../src/db/connect.ts';
import { cloneDatabase, dropDatabase } from './db.ts';
import { configureEspf, EspfProcess, type EspfConfig } from './espf.ts';
import type { BenchContext } from './figure.ts';
import { log, round, sleep } from './util.ts';

export const NO_RATE_LIMIT = { tokenRate: 1e6, tokenBurstiness: 1_000_000 } as const;

/** EventSender alone, subscribed to Account/Blocked and Account/Unblocked (the events of most figures). */
export const ACCOUNT_BLOCKS_TO_SENDER = {
  types: ['Account/Blocked', 'Account/Unblocked'],
  subscriptions: [['EventSender', 'Account/Blocked'], ['EventSender', 'Account/Unblocked']],
  handlers: ['EventSender'],
} as const;

export interface EspfRun {
  readonly url: string;
  readonly db: Db;
  readonly instance: string;
  /** The running `espf run`; replaced by restart(). */
  espf: EspfProcess;
  /** Stops `espf run` and starts it again (same instance, same slot). */
  restart(): Promise<void>;
}

/**
 * One run of a delivery figure: a fresh database cloned from the template,
 * espf configured by SQL rows, the receiver reset, `espf run` started and
 * streaming. Everything is stopped and dropped afterwards.
 */
export async function withEspf<T>(ctx: BenchContext, figure: string, run: number,
  cfg: Omit<EspfConfig, 'instance' | 'receiverUrl'>, body: (r: EspfRun) => Promise<T>): Promise<T> {
  const instance = ctx.name(figure, run);
  const url = await cloneDatabase(ctx.server.adminUrl, ctx.seed.template, instance);
  const db = connect({ connectionString: url, poolSize: 8, applicationName: 'espf-bench' });
  let espf: EspfProcess | undefined;
  try {
    await configureEspf(db, { ...cfg, instance, receiverUrl: ctx.receiver.url });
    await ctx.receiver.reset();
    espf = await EspfProcess.start(url, instance);
    const r: EspfRun = {
      url, db, instance, espf,
      restart: async () => {
        await r.espf.stop();
        espf = r.espf = await EspfProcess.start(url, instance);
      },
    };
    return await body(r);
  } finally {
    await espf?.stop().catch(() => undefined);
    await db.dispose().catch(() => undefined);
    await dropDatabase(ctx.server.adminUrl, instance).catch((err: unknown) => log(`drop ${instance}: ${String(err)}`));
  }
}

/** `events` Account/Blocked|Unblocked events from the first accounts `lo` …, in bursts of `burstRows` (one UPDATE, one transaction each). */
export async function commitBursts(db: Db, lo: number, events: number, burstRows: number): Promise<void> {
  for (let first = 0; first < events; first += burstRows) {
    const last = Math.min(events, first + burstRows) - 1;
    await db.query(sql`UPDATE billing.account SET blocked = NOT blocked WHERE i_account BETWEEN ${lo + first} AND ${lo + last}`);
  }
}

export async function lastEventId(db: Db): Promise<number> {
  const [r] = await db.query(sql`SELECT coalesce(max(i_event), 0)::bigint AS n FROM espf.events`) as [{ n: number }];
  return Number(r.n);
}

export interface DeliveredResult {
  /** Events with a DELIVERED row of EventSender, i_event > after. */
  readonly delivered: number;
  /** Epoch ms of the last DELIVERED row's finished_at (NaN if none). */
  readonly lastFinishedAt: number;
  /** Epoch ms when the receiver had seen them all (NaN if it never did). */
  readonly receivedAllAt: number;
  /** Every expected event was delivered within the time allowed. */
  readonly complete: boolean;
  readonly receiverUnique: number;
  readonly receiverDuplicates: number;
}

async function deliveredRows(db: Db, after: number, eventType?: string): Promise<{ n: number; last: number }> {
  const [r] = await db.query(sql`
    SELECT count(*)::bigint AS n, extract(epoch FROM max(finished_at)) * 1000 AS last
      FROM espf.event_deliveries
     WHERE handler = 'EventSender' AND state = 'DELIVERED' AND i_event > ${after}
       ${eventType ? sql`AND event_type = ${eventType}` : sql``}`) as [{ n: number; last: number | string | null }];
  return { n: Number(r.n), last: r.last === null ? NaN : Number(r.last) };
}

/**
 * Waits until the receiver has `expected` distinct events and espf.event_deliveries
 * shows them DELIVERED, or until `timeoutMs`. Fails at once if `espf run` exits.
 */
export async function waitDelivered(ctx: BenchContext, r: EspfRun, o: { after: number; expected: number; timeoutMs: number; eventType?: string; onProgress?: (unique: number) => void }): Promise<DeliveredResult> {
  const until = Date.now() + o.timeoutMs;
  let receivedAllAt = NaN;
  let unique = 0;
  let duplicates = 0;
  let lastLog = Date.now();
  while (Date.now() < until) {
    if (!r.espf.alive) throw new Error(`espf run exited during the run: ${r.espf.lastOutput()}`);
    const s = await ctx.receiver.stats();
    unique = s.unique; duplicates = s.duplicates;
    o.onProgress?.(unique);
    if (unique >= o.expected) { receivedAllAt = s.lastAt; break; }
    if (Date.now() - lastLog > 10_000) { log(`  received ${unique}/${o.expected}`); lastLog = Date.now(); }
    await sleep(unique > 0 ? 100 : 50);
  }
  // The status rows follow the 2xx: give them a little longer than the deliveries.
  const rowsUntil = Math.max(until, Date.now() + 15_000);
  let d = await deliveredRows(r.db, o.after, o.eventType);
  while (d.n < o.expected && Date.now() < (Number.isNaN(receivedAllAt) ? until : rowsUntil)) {
    if (!r.espf.alive) throw new Error(`espf run exited during the run: ${r.espf.lastOutput()}`);
    await sleep(100);
    d = await deliveredRows(r.db, o.after, o.eventType);
  }
  return { delivered: d.n, lastFinishedAt: d.last, receivedAllAt, complete: d.n >= o.expected, receiverUnique: unique, receiverDuplicates: duplicates };
}

/** Parameters of a figure of one large statement over the big customer's accounts (bigtx, fanout). */
export interface BigCustomerParams extends Record<string, unknown> {
  readonly accounts: number;
  readonly tokenRate: number;
  readonly tokenBurstiness: number;
  /** Seconds allowed from the commit until the last delivery. */
  readonly timeoutS: number;
}

export function bigCustomerParams(ctx: BenchContext, timeoutS: { full: number; quick: number }): BigCustomerParams {
  return { accounts: ctx.seed.fanoutAccounts[1] - ctx.seed.fanoutAccounts[0] + 1, ...NO_RATE_LIMIT, timeoutS: ctx.quick ? timeoutS.quick : timeoutS.full };
}

/** What deliverStatement saw; times are epoch ms of this machine's clock. */
export interface StatementDelivery extends DeliveredResult {
  /** The statement was sent. */
  readonly startedAt: number;
  /** It returned (autocommit: after its COMMIT). */
  readonly committedAt: number;
  /** The later of the last 2xx and the last DELIVERED row; when the wait gave up if incomplete. */
  readonly end: number;
  /** Events of `eventType` (of any type if none is given) written since the statement was sent. */
  readonly produced: number;
  /** First POST at the receiver. */
  readonly firstArrivalAt: number;
  /** Commit of the transaction the delivered events came in, as the stream gave it (the
   *  earliest espf.event_deliveries.committed_at): the statement's own, or a dispatcher's. */
  readonly eventsCommittedAt: number;
  /** VmHWM of `espf run` once the wait is over. */
  readonly peakRssMb: number;
}

/**
 * One statement in one transaction, then the wait until the `expected` events it
 * produces, itself or through a dispatcher, are delivered (the large-transaction
 * figures, bigtx and fanout). `timeoutMs` counts from the commit.
 */
export async function deliverStatement(ctx: BenchContext, r: EspfRun, statement: SQLQuery,
  o: { expected: number; timeoutMs: number; eventType?: string }): Promise<StatementDelivery> {
  const after = await lastEventId(r.db);
  const startedAt = Date.now();
  await r.db.query(statement);
  const committedAt = Date.now();
  log(`  committed in ${round((committedAt - startedAt) / 1000, 1)} s; espf run peak RSS so far ${round(r.espf.peakRssMb(), 1)} MB`);
  const d = await waitDelivered(ctx, r, { after, expected: o.expected, eventType: o.eventType, timeoutMs: allowance(ctx, o.timeoutMs) });
  const peakRssMb = r.espf.peakRssMb();
  const end = d.complete ? Math.max(d.lastFinishedAt, d.receivedAllAt) : Date.now();
  const [row] = await r.db.query(sql`
    SELECT (SELECT count(*) FROM espf.events
             WHERE i_event > ${after} ${o.eventType ? sql`AND event_type = ${o.eventType}` : sql``})::bigint AS produced,
           extract(epoch FROM (SELECT min(committed_at) FROM espf.event_deliveries
                                WHERE handler = 'EventSender' AND i_event > ${after})) * 1000 AS events_committed`) as [{ produced: number; events_committed: number | string | null }];
  const { firstAt } = await ctx.receiver.stats();
  return {
    ...d, startedAt, committedAt, end, peakRssMb,
    produced: Number(row.produced),
    firstArrivalAt: firstAt > 0 ? firstAt : NaN,
    eventsCommittedAt: row.events_committed === null ? NaN : Number(row.events_committed),
  };
}

/** Time allowed for one wait: `wantMs`, but not (much) past the bench deadline. */
export function allowance(ctx: BenchContext, wantMs: number, minMs = 10_000): number {
  return Math.max(minMs, Math.min(wantMs, ctx.deadline - Date.now()));
}

/**
 * `events` Account/Blocked and Account/Unblocked rows written straight into
 * espf.events for the accounts [lo, hi], as the capture triggers would write
 * them, only faster: one DO block, a COMMIT per `rowsPerTransaction` rows (many
 * transactions, as a billing system writes them).
 */
export async function writeOutboxEvents(db: Db, events: number, rowsPerTransaction: number, [lo, hi]: readonly [number, number]): Promise<void> {
  const nAccounts = hi - lo + 1;
  await db.query(sql.__dangerous__rawValue(`
    DO $$
    DECLARE b int;
    BEGIN
      FOR b IN 0 .. ${Math.ceil(events / rowsPerTransaction) - 1} LOOP
        INSERT INTO espf.events (i_event, event_type, variables)
        SELECT id, CASE WHEN (g / ${nAccounts}) % 2 = 0 THEN 'Account/Blocked' ELSE 'Account/Unblocked' END,
               jsonb_build_object('i_account', ${lo} + g % ${nAccounts}, 'i_event', id, 'i_env', 1, 'event_time', espf.event_time())
          FROM (SELECT g, nextval('espf.events_i_event_seq') AS id
                  FROM generate_series(b * ${rowsPerTransaction}, least(${events}, (b + 1) * ${rowsPerTransaction}) - 1) g) s;
        COMMIT;
      END LOOP;
    END $$`));
}
