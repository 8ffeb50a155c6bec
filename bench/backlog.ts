/**
 * backlog_eps, peak_rss_mb: `espf run` is started once (its slot is created),
 * stopped, and 1,000,000 events (quick 20,000) are committed to the outbox while
 * it is down (Account/Blocked and Account/Unblocked rows written straight into
 * espf.events in transactions of 1,000, as the capture triggers would write
 * them, only faster). Then `espf run` is started again: events/s from its
 * start until the last DELIVERED row, and its peak resident memory (VmHWM).
 * A run that does not drain within its time allowance reports the rate of what
 * it delivered, marked incomplete.
 */
import { sql } from '@databases/pg';
import { ACCOUNT_BLOCKS_TO_SENDER, allowance, lastEventId, NO_RATE_LIMIT, waitDelivered, withEspf, writeOutboxEvents } from './lib/delivery.ts';
import type { BenchContext, Figure, RunResult } from './lib/figure.ts';
import { log, round } from './lib/util.ts';

export interface BacklogParams extends Record<string, unknown> {
  readonly events: number;
  readonly rowsPerTransaction: number;
  readonly tokenRate: number;
  readonly tokenBurstiness: number;
  readonly maxDrainSeconds: number;
}

export const backlog: Figure<BacklogParams> = {
  name: 'backlog',
  budgetS: { full: 260, quick: 20 },
  params: (ctx) => ({
    events: Number(process.env.BENCH_BACKLOG_EVENTS ?? (ctx.quick ? 10_000 : 1_000_000)),
    rowsPerTransaction: 1000,
    ...NO_RATE_LIMIT,
    maxDrainSeconds: ctx.quick ? 12 : 230,
  }),
  async run(ctx: BenchContext, p: BacklogParams, run: number): Promise<RunResult> {
    const [lo, hi] = ctx.seed.accounts;
    return withEspf(ctx, 'backlog', run, {
      tokenRate: p.tokenRate, tokenBurstiness: p.tokenBurstiness, ...ACCOUNT_BLOCKS_TO_SENDER,
    }, async (r) => {
      await r.espf.stop();
      const after = await lastEventId(r.db);
      const b0 = Date.now();
      await writeOutboxEvents(r.db, p.events, p.rowsPerTransaction, [lo, hi]);
      const backlogSeconds = (Date.now() - b0) / 1000;
      const written = (await lastEventId(r.db)) - after;
      if (written !== p.events) throw new Error(`backlog: wrote ${written} events, wanted ${p.events}`);
      log(`  backlog of ${written} events written in ${round(backlogSeconds, 1)} s; starting espf run`);
      const t0 = Date.now();
      await r.restart();
      const readyAt = Date.now();
      const d = await waitDelivered(ctx, r, { after, expected: p.events, timeoutMs: allowance(ctx, p.maxDrainSeconds * 1000, 10_000) });
      const rss = r.espf.peakRssMb();
      const end = d.complete ? Math.max(d.lastFinishedAt, d.receivedAllAt) : Date.now();
      const seconds = (end - t0) / 1000;
      return {
        values: { backlog_eps: round(d.delivered / seconds, 0), peak_rss_mb: round(rss, 1) },
        details: {
          complete: d.complete, delivered: d.delivered, seconds: round(seconds, 3),
          startup_s: round((readyAt - t0) / 1000, 3),
          backlog_write_s: round(backlogSeconds, 1),
          receiver_duplicates: d.receiverDuplicates,
        },
      };
    });
  },
};
