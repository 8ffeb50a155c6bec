/**
 * bigtx_eps, bigtx_peak_rss_mb: one transaction of 1,000,000 events (quick
 * 20,000). `espf run` streams; one autocommit `UPDATE billing.account SET
 * blocked = NOT blocked` over the accounts of the template's big customer (the
 * fan-out customer: the figure works in its own clone, so the fanout figure
 * still finds them unblocked) makes one Account/Blocked (or Account/Unblocked)
 * per account in that one transaction. bigtx_eps = events ÷ seconds from the
 * UPDATE's return (its commit) until every event has its 2xx at the receiver
 * and its DELIVERED row; the UPDATE's own time is in the details
 * (update_commit_s). bigtx_peak_rss_mb = VmHWM of `espf run`, started as for
 * every figure (bin/espf.js with its first line's flags), once all are
 * delivered. A run that does not deliver everything within its allowance
 * reports the rate of what it delivered, marked incomplete.
 */
import { sql } from '@databases/pg';
import { ACCOUNT_BLOCKS_TO_SENDER, bigCustomerParams, deliverStatement, withEspf, type BigCustomerParams } from './lib/delivery.ts';
import type { BenchContext, Figure, RunResult } from './lib/figure.ts';
import { round } from './lib/util.ts';

export const bigtx: Figure<BigCustomerParams> = {
  name: 'bigtx',
  budgetS: { full: 540, quick: 45 },
  params: (ctx) => bigCustomerParams(ctx, { full: 420, quick: 30 }),
  async run(ctx: BenchContext, p: BigCustomerParams, run: number): Promise<RunResult> {
    const [lo, hi] = ctx.seed.fanoutAccounts;
    return withEspf(ctx, 'bigtx', run, {
      tokenRate: p.tokenRate, tokenBurstiness: p.tokenBurstiness, ...ACCOUNT_BLOCKS_TO_SENDER,
    }, async (r) => {
      const x = await deliverStatement(ctx, r, sql`UPDATE billing.account SET blocked = NOT blocked WHERE i_account BETWEEN ${lo} AND ${hi}`,
        { expected: p.accounts, timeoutMs: p.timeoutS * 1000 });
      const seconds = (x.end - x.committedAt) / 1000;
      const after = (at: number) => round((at - x.committedAt) / 1000, 3);
      return {
        values: { bigtx_eps: round(x.delivered / seconds, 0), bigtx_peak_rss_mb: round(x.peakRssMb, 1) },
        details: {
          complete: x.complete, events: x.produced, delivered: x.delivered,
          update_commit_s: round((x.committedAt - x.startedAt) / 1000, 3),
          seconds_from_commit: round(seconds, 3),
          first_2xx_after_commit_s: after(x.firstArrivalAt),
          last_2xx_after_commit_s: after(x.receivedAllAt),
          last_status_row_after_commit_s: after(x.lastFinishedAt),
          receiver_duplicates: x.receiverDuplicates,
        },
      };
    });
  },
};
