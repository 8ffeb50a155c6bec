/**
 * rate_accuracy: EventSender with token_rate 50 and token_burstiness 10, a
 * backlog larger than it can send in the window; for 20 s (quick 6 s) from the
 * first arrival: the mean rate at the receiver and the largest number of
 * arrivals in any one-second (sliding) window.
 */
import { sql } from '@databases/pg';
import { lastEventId, withEspf } from './lib/delivery.ts';
import type { BenchContext, Figure, RunResult } from './lib/figure.ts';
import { round, sleep, waitFor } from './lib/util.ts';

export interface RateParams extends Record<string, unknown> {
  readonly tokenRate: number;
  readonly tokenBurstiness: number;
  readonly windowSeconds: number;
  readonly events: number;
}

/** Largest count of sorted times in any half-open window [t, t + widthMs). */
export function maxInWindow(sorted: ArrayLike<number>, widthMs: number): number {
  let best = 0;
  for (let i = 0, j = 0; j < sorted.length; j++) {
    while (sorted[j]! - sorted[i]! >= widthMs) i++;
    best = Math.max(best, j - i + 1);
  }
  return best;
}

export const rateAccuracy: Figure<RateParams> = {
  name: 'rate_accuracy',
  budgetS: { full: 85, quick: 12 },
  params: (ctx) => {
    const windowSeconds = ctx.quick ? 5 : 20;
    return { tokenRate: 50, tokenBurstiness: 10, windowSeconds, events: Math.ceil(50 * windowSeconds * 1.5) + 100 };
  },
  async run(ctx: BenchContext, p: RateParams, run: number): Promise<RunResult> {
    const lo = ctx.seed.accounts[0];
    return withEspf(ctx, 'rate', run, {
      tokenRate: p.tokenRate, tokenBurstiness: p.tokenBurstiness,
      types: ['Account/Blocked'],
      subscriptions: [['EventSender', 'Account/Blocked']],
      handlers: ['EventSender'],
    }, async (r) => {
      const after = await lastEventId(r.db);
      await r.db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account BETWEEN ${lo} AND ${lo + p.events - 1}`);
      const committed = await lastEventId(r.db);
      if (committed - after !== p.events) throw new Error(`expected ${p.events} events, captured ${committed - after}`);
      const first = await waitFor('the first arrival', 30_000, async () => {
        if (!r.espf.alive) throw new Error(`espf run exited during the run: ${r.espf.lastOutput()}`);
        const s = await ctx.receiver.stats();
        return s.unique > 0 ? s.firstAt : undefined;
      }, 20);
      const windowMs = p.windowSeconds * 1000;
      await sleep(Math.max(0, first + windowMs + 500 - Date.now()));
      if (!r.espf.alive) throw new Error(`espf run exited during the run: ${r.espf.lastOutput()}`);
      const arrivals = await ctx.receiver.arrivals();
      const times = [...arrivals.at].sort((a, b) => a - b);
      const t0 = times[0]!;
      const inWindow = times.filter((t) => t < t0 + windowMs);
      const steady = inWindow.filter((t) => t >= t0 + 1000);
      const mean = inWindow.length / p.windowSeconds;
      const s = await ctx.receiver.stats();
      return {
        values: {
          mean_rate: round(mean, 2),
          max_window: maxInWindow(inWindow, 1000),
          mean_error_pct: round(((mean - p.tokenRate) / p.tokenRate) * 100, 2),
          token_rate: p.tokenRate,
        },
        details: {
          arrivals_in_window: inWindow.length,
          steady_rate_after_first_second: round(steady.length / (p.windowSeconds - 1), 2),
          first_second: inWindow.filter((t) => t < t0 + 1000).length,
          receiver_duplicates: s.duplicates,
          per_second: s.perSecond.map((x) => x.count),
        },
      };
    });
  },
};
