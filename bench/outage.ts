/**
 * outage: a receiver that is down while 1,000,000 events (quick 10,000) are
 * committed, then comes back.
 *
 *   1. `espf run` streams; the receiver answers 503 to every POST (and counts them).
 *   2. The events are written to espf.events in 1,000-row transactions (as the
 *      backlog figure does), while `espf run` runs; the outage lasts until every
 *      one of them has a waiting row (PENDING or RETRY) in espf.event_deliveries,
 *      plus `holdSeconds`.
 *   3. The receiver answers 200 again: the backlog drains.
 *
 * Figures: peak_rss_outage_mb (VmHWM of `espf run` at the end of the outage;
 * goal <= 200 MB), down_requests (POSTs the down receiver got; goal: probes
 * only, i.e. at most down_requests_bound = breaker_failures + the requests on
 * the wire when the breaker opened (128, src/delivery/attempter.ts) + one per probe interval), and
 * drain_eps (events/s from the first 2xx after the receiver came back to the
 * last DELIVERED row; goal >= 0.8 x backlog_eps). recovery_s is the time from
 * the receiver coming back to its first 2xx (the probe interval at that moment:
 * probe_max_delay is set to 10 s here).
 */
import { sql } from '@databases/pg';
import { ACCOUNT_BLOCKS_TO_SENDER, allowance, lastEventId, NO_RATE_LIMIT, waitDelivered, withEspf, writeOutboxEvents } from './lib/delivery.ts';
import type { BenchContext, Figure, RunResult } from './lib/figure.ts';
import { log, round, sleep } from './lib/util.ts';
import { maxInFlight } from '../src/delivery/attempter.ts';

export interface OutageParams extends Record<string, unknown> {
  readonly events: number;
  readonly rowsPerTransaction: number;
  readonly tokenRate: number;
  readonly tokenBurstiness: number;
  readonly breakerFailures: number;
  readonly probeDelay: number;
  readonly probeMaxDelay: number;
  readonly holdSeconds: number;
  readonly maxOutageSeconds: number;
  readonly maxDrainSeconds: number;
}

/** Requests of the one-URL handler on the wire at once (src/delivery/attempter.ts). */
const MAX_IN_FLIGHT = maxInFlight({ url: ['http://receiver'] });

export const outage: Figure<OutageParams> = {
  name: 'outage',
  budgetS: { full: 420, quick: 45 },
  params: (ctx) => ({
    events: Number(process.env.BENCH_OUTAGE_EVENTS ?? (ctx.quick ? 10_000 : 1_000_000)),
    rowsPerTransaction: 1000,
    ...NO_RATE_LIMIT,
    breakerFailures: 10,
    probeDelay: 5,
    probeMaxDelay: 10,
    holdSeconds: ctx.quick ? 5 : 20,
    maxOutageSeconds: ctx.quick ? 20 : 170,
    maxDrainSeconds: ctx.quick ? 15 : 220,
  }),
  async run(ctx: BenchContext, p: OutageParams, run: number): Promise<RunResult> {
    const [lo, hi] = ctx.seed.accounts;
    return withEspf(ctx, 'outage', run, {
      tokenRate: p.tokenRate, tokenBurstiness: p.tokenBurstiness, ...ACCOUNT_BLOCKS_TO_SENDER,
    }, async (r) => {
      await r.db.query(sql`UPDATE espf.http_handlers
                              SET breaker_failures = ${p.breakerFailures}, probe_delay = ${p.probeDelay},
                                  probe_max_delay = ${p.probeMaxDelay}, max_attempts = 100
                            WHERE handler = 'EventSender'`);
      await r.restart(); // the breaker settings from the start
      await ctx.receiver.down(503);
      const after = await lastEventId(r.db);
      const t0 = Date.now();
      await writeOutboxEvents(r.db, p.events, p.rowsPerTransaction, [lo, hi]);
      const writeSeconds = (Date.now() - t0) / 1000;
      log(`  ${p.events} events committed in ${round(writeSeconds, 1)} s while the receiver is down`);
      // The outage: until every event waits in espf.event_deliveries.
      const until = Date.now() + allowance(ctx, p.maxOutageSeconds * 1000, 10_000);
      let waiting = 0;
      let lastLog = Date.now();
      while (Date.now() < until) {
        if (!r.espf.alive) throw new Error(`espf run exited during the outage: ${r.espf.lastOutput()}`);
        const [w] = await r.db.query(sql`SELECT count(*)::int AS n FROM espf.event_deliveries
                                          WHERE handler = 'EventSender' AND i_event > ${after} AND state IN ('PENDING', 'RETRY')`) as [{ n: number }];
        waiting = w.n;
        if (waiting >= p.events) break;
        if (Date.now() - lastLog > 10_000) { log(`  waiting rows ${waiting}/${p.events}`); lastLog = Date.now(); }
        await sleep(1000);
      }
      const recordedAt = Date.now();
      await sleep(p.holdSeconds * 1000);
      const outageSeconds = (Date.now() - t0) / 1000;
      const rssOutage = r.espf.peakRssMb();
      const downRequests = (await ctx.receiver.stats()).downRequests;
      const bound = p.breakerFailures + MAX_IN_FLIGHT + Math.ceil(outageSeconds / p.probeDelay);
      log(`  outage of ${round(outageSeconds, 1)} s: ${waiting} waiting rows, ${downRequests} requests to the down receiver, peak RSS ${round(rssOutage, 1)} MB`);

      await ctx.receiver.up();
      const upAt = Date.now();
      const d = await waitDelivered(ctx, r, { after, expected: p.events, timeoutMs: allowance(ctx, p.maxDrainSeconds * 1000, 10_000) });
      const s = await ctx.receiver.stats();
      const end = d.complete ? Math.max(d.lastFinishedAt, d.receivedAllAt) : Date.now();
      const drainSeconds = (end - s.firstAt) / 1000;
      return {
        values: {
          peak_rss_outage_mb: round(rssOutage, 1),
          down_requests: downRequests,
          down_requests_bound: bound,
          drain_eps: round(d.delivered / drainSeconds, 0),
        },
        details: {
          complete: d.complete && waiting >= p.events,
          waiting_at_end_of_outage: waiting,
          delivered: d.delivered,
          write_s: round(writeSeconds, 1),
          recorded_waiting_s: round((recordedAt - t0) / 1000, 1),
          outage_s: round(outageSeconds, 1),
          recovery_s: round((s.firstAt - upAt) / 1000, 2),
          drain_s: round(drainSeconds, 1),
          peak_rss_all_mb: round(r.espf.peakRssMb(), 1),
          receiver_duplicates: d.receiverDuplicates,
        },
      };
    });
  },
};
