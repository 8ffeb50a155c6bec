/**
 * fanout_s, fanout_peak_rss_mb: a customer with 1,000,000 accounts (quick
 * 20,000) is blocked; the CustomerToAccountsDispatcher fans Customer/Blocked
 * out to an Account/Blocked per account (espf.dispatch: one transaction), which
 * come back through the stream as one large transaction. fanout_s = seconds
 * from the customer's UPDATE (one row, autocommit: its commit) until every
 * Account/Blocked is delivered (its 2xx and its DELIVERED row), the dispatch
 * included;
 * fanout_peak_rss_mb = VmHWM of `espf run` (started as for every figure) once
 * they are; fanout_accounts = the accounts, for the goal in bench/run.ts.
 */
import { sql } from '@databases/pg';
import { bigCustomerParams, deliverStatement, withEspf, type BigCustomerParams } from './lib/delivery.ts';
import type { BenchContext, Figure, RunResult } from './lib/figure.ts';
import { round } from './lib/util.ts';

export const fanout: Figure<BigCustomerParams> = {
  name: 'fanout',
  budgetS: { full: 540, quick: 45 },
  params: (ctx) => bigCustomerParams(ctx, { full: 480, quick: 30 }),
  async run(ctx: BenchContext, p: BigCustomerParams, run: number): Promise<RunResult> {
    return withEspf(ctx, 'fanout', run, {
      tokenRate: p.tokenRate, tokenBurstiness: p.tokenBurstiness,
      types: ['Customer/Blocked', 'Account/Blocked'],
      subscriptions: [['CustomerToAccountsDispatcher', 'Customer/Blocked'], ['EventSender', 'Account/Blocked']],
      handlers: ['EventSender', 'CustomerToAccountsDispatcher'],
    }, async (r) => {
      const x = await deliverStatement(ctx, r, sql`UPDATE billing.customer SET blocked = true WHERE i_customer = ${ctx.seed.bigCustomer}`,
        { expected: p.accounts, eventType: 'Account/Blocked', timeoutMs: p.timeoutS * 1000 });
      // From the UPDATE being sent, as fanout_s always counted: an autocommit UPDATE of one
      // customer row, so its commit within milliseconds (commit_ms).
      const after = (at: number) => round((at - x.startedAt) / 1000, 3);
      return {
        values: { fanout_s: after(x.end), fanout_peak_rss_mb: round(x.peakRssMb, 1), fanout_accounts: p.accounts },
        details: {
          complete: x.complete, delivered: x.delivered, dispatched_events: x.produced,
          commit_ms: round(x.committedAt - x.startedAt, 1),
          dispatch_committed_after_s: after(x.eventsCommittedAt),
          first_2xx_after_s: after(x.firstArrivalAt),
          last_2xx_after_s: after(x.receivedAllAt),
          last_status_row_after_s: after(x.lastFinishedAt),
          receiver_duplicates: x.receiverDuplicates,
        },
      };
    });
  },
};
