/**
 * latency_ms: commit to arrival at the receiver at a steady 1,000 events/s.
 * Transactions of `eventsPerTransaction` events (one UPDATE toggling
 * billing.account.blocked on that many distinct accounts, never the same account
 * twice) are paced evenly from a pool of connections. (One event per transaction,
 * BENCH_LATENCY_EVENTS_PER_TX=1, needs 1,000 durable commits/s, more than a loaded
 * 2-core machine sustains next to espf and the receiver.) Commit time = when the autocommit UPDATE returned to the
 * client (a fraction of a millisecond after the commit itself: latency is
 * understated by that much); arrival time = when the receiver got the request.
 * Both are epoch ms of the same machine clock. A warm-up is excluded.
 */
import { sql } from '@databases/pg';
import { ACCOUNT_BLOCKS_TO_SENDER, allowance, lastEventId, NO_RATE_LIMIT, waitDelivered, withEspf } from './lib/delivery.ts';
import type { BenchContext, Figure, RunResult } from './lib/figure.ts';
import { percentile, round, sleep } from './lib/util.ts';

export interface LatencyParams extends Record<string, unknown> {
  readonly eventsPerSecond: number;
  readonly eventsPerTransaction: number;
  readonly warmupSeconds: number;
  readonly seconds: number;
  readonly producerConnections: number;
  readonly tokenRate: number;
  readonly tokenBurstiness: number;
}

const nowMs = (): number => performance.timeOrigin + performance.now();

export const latency: Figure<LatencyParams> = {
  name: 'latency',
  budgetS: { full: 90, quick: 12 },
  params: (ctx) => ({
    eventsPerSecond: 1000,
    eventsPerTransaction: Number(process.env.BENCH_LATENCY_EVENTS_PER_TX ?? 5),
    warmupSeconds: ctx.quick ? 1 : 2,
    seconds: ctx.quick ? 3 : 15,
    producerConnections: 8,
    ...NO_RATE_LIMIT,
  }),
  async run(ctx: BenchContext, p: LatencyParams, run: number): Promise<RunResult> {
    const per = p.eventsPerTransaction;
    const txPerSecond = p.eventsPerSecond / per;
    const nTx = Math.round(txPerSecond * (p.warmupSeconds + p.seconds));
    const total = nTx * per;
    const lo = ctx.seed.accounts[0];
    if (total > ctx.seed.accounts[1] - lo + 1) throw new Error(`latency needs ${total} distinct accounts`);
    return withEspf(ctx, 'latency', run, {
      tokenRate: p.tokenRate, tokenBurstiness: p.tokenBurstiness, ...ACCOUNT_BLOCKS_TO_SENDER,
    }, async (r) => {
      const after = await lastEventId(r.db);
      const issuedAt = new Float64Array(nTx);
      const committedAt = new Float64Array(nTx);
      // Warm the producer's connections so that connecting is not counted.
      await Promise.all(Array.from({ length: p.producerConnections }, () => r.db.query(sql`SELECT 1`)));
      const pending = new Set<Promise<void>>();
      let issued = 0;
      let maxInFlight = 0;
      const t0 = performance.now();
      while (issued < nTx) {
        const due = Math.min(nTx, Math.floor(((performance.now() - t0) * txPerSecond) / 1000) + 1);
        while (issued < due) {
          const k = issued++;
          issuedAt[k] = nowMs();
          const q = r.db.query(sql`UPDATE billing.account SET blocked = NOT blocked WHERE i_account BETWEEN ${lo + k * per} AND ${lo + k * per + per - 1}`)
            .then(() => { committedAt[k] = nowMs(); });
          pending.add(q);
          void q.finally(() => pending.delete(q));
        }
        maxInFlight = Math.max(maxInFlight, pending.size);
        if (!r.espf.alive) throw new Error(`espf run exited during the run: ${r.espf.lastOutput()}`);
        await sleep(1);
      }
      await Promise.all(pending);
      const producedSeconds = (performance.now() - t0) / 1000;
      const d = await waitDelivered(ctx, r, { after, expected: total, timeoutMs: allowance(ctx, 60_000) });
      const arrivals = await ctx.receiver.arrivals();
      const accountOf = new Map<number, number>();
      const rows = await r.db.query(sql`SELECT i_event, (variables->>'i_account')::bigint AS a FROM espf.events WHERE i_event > ${after}`) as { i_event: number; a: number }[];
      for (const row of rows) accountOf.set(Number(row.i_event), Number(row.a));
      const fromCommit: number[] = [];
      const fromIssue: number[] = [];
      const warm = p.eventsPerSecond * p.warmupSeconds;
      for (let i = 0; i < arrivals.iEvent.length; i++) {
        const a = accountOf.get(arrivals.iEvent[i]!);
        if (a === undefined) continue;
        if (a - lo < warm || a - lo >= total) continue;
        const k = Math.floor((a - lo) / per);
        fromCommit.push(arrivals.at[i]! - committedAt[k]!);
        fromIssue.push(arrivals.at[i]! - issuedAt[k]!);
      }
      fromCommit.sort((x, y) => x - y);
      fromIssue.sort((x, y) => x - y);
      const measured = total - warm;
      if (fromCommit.length < measured * 0.99) {
        throw new Error(`only ${fromCommit.length} of ${measured} measured events reached the receiver (delivered rows: ${d.delivered})`);
      }
      return {
        values: { p50: round(percentile(fromCommit, 50), 2), p95: round(percentile(fromCommit, 95), 2), p99: round(percentile(fromCommit, 99), 2) },
        details: {
          measured_events: fromCommit.length, expected: measured, max_ms: round(fromCommit[fromCommit.length - 1] ?? NaN, 2),
          achieved_rate: round(total / producedSeconds, 1), producer_max_in_flight: maxInFlight,
          from_statement_start_ms: { p50: round(percentile(fromIssue, 50), 2), p95: round(percentile(fromIssue, 95), 2), p99: round(percentile(fromIssue, 99), 2) },
          negative_latencies: fromCommit.filter((x) => x < 0).length,
          receiver_duplicates: d.receiverDuplicates,
        },
      };
    });
  },
};
