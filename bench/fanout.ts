/**
 * fanout_s: a customer with 100,000 accounts (quick 5,000) is blocked; the
 * CustomerToAccountsDispatcher fans Customer/Blocked out to an Account/Blocked
 * per account; seconds from the commit until every Account/Blocked is delivered
 * (its 2xx and its DELIVERED row).
 */
import { sql } from '@databases/pg';
import { allowance, lastEventId, NO_RATE_LIMIT, waitDelivered, withEspf } from './lib/delivery.ts';
import type { BenchContext, Figure, RunResult } from './lib/figure.ts';
import { round } from './lib/util.ts';

export interface FanoutParams extends Record<string, unknown> {
  readonly accounts: number;
  readonly tokenRate: number;
  readonly tokenBurstiness: number;
  readonly timeoutS: number;
}

export const fanout: Figure<FanoutParams> = {
  name: 'fanout',
  budgetS: { full: 100, quick: 15 },
  params: (ctx) => ({
    accounts: ctx.seed.fanoutAccounts[1] - ctx.seed.fanoutAccounts[0] + 1,
    ...NO_RATE_LIMIT,
    timeoutS: ctx.quick ? 12 : 60,
  }),
  async run(ctx: BenchContext, p: FanoutParams, run: number): Promise<RunResult> {
    return withEspf(ctx, 'fanout', run, {
      tokenRate: p.tokenRate, tokenBurstiness: p.tokenBurstiness,
      types: ['Customer/Blocked', 'Account/Blocked'],
      subscriptions: [['CustomerToAccountsDispatcher', 'Customer/Blocked'], ['EventSender', 'Account/Blocked']],
      handlers: ['EventSender', 'CustomerToAccountsDispatcher'],
    }, async (r) => {
      const after = await lastEventId(r.db);
      const t0 = Date.now();
      await r.db.query(sql`UPDATE billing.customer SET blocked = true WHERE i_customer = ${ctx.seed.bigCustomer}`);
      const committedAt = Date.now();
      const d = await waitDelivered(ctx, r, { after, expected: p.accounts, eventType: 'Account/Blocked', timeoutMs: allowance(ctx, p.timeoutS * 1000) });
      // Not drained in time: report the time waited, a lower bound, marked incomplete.
      const end = d.complete ? Math.max(d.lastFinishedAt, d.receivedAllAt) : Date.now();
      const [{ n: produced }] = await r.db.query(sql`SELECT count(*)::int AS n FROM espf.events WHERE i_event > ${after} AND event_type = 'Account/Blocked'`) as [{ n: number }];
      return {
        values: { fanout_s: round((end - t0) / 1000, 3) },
        details: {
          complete: d.complete, delivered: d.delivered, dispatched_events: produced,
          commit_ms: round(committedAt - t0, 1),
          last_2xx_after_s: round((d.receivedAllAt - t0) / 1000, 3),
          last_status_row_after_s: round((d.lastFinishedAt - t0) / 1000, 3),
          receiver_duplicates: d.receiverDuplicates,
        },
      };
    });
  },
};
