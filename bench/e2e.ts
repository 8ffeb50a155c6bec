/**
 * e2e_eps: N events (100,000; quick 10,000) committed in bursts of 1,000 rows
 * (each burst one UPDATE toggling billing.account.blocked, one transaction),
 * rate limit off, async mode: events/s from the first commit until the last
 * 2xx and its DELIVERED row of espf.event_deliveries. Also what one event costs
 * in CPU time (microseconds) in espf run, in the PostgreSQL server processes
 * (capture triggers, WAL decoding, recording outcomes) and in the receiver.
 *
 * e2e_shaped: the same run with EventSender sending a one-step shaped body
 * (request steps, docs/handlers.md: SHAPED_STEP_BODY of bench/lib/espf.ts, a
 * JSON body built by expressions from 4 variables) instead of the EventSender body.
 */
import { ACCOUNT_BLOCKS_TO_SENDER, allowance, commitBursts, lastEventId, NO_RATE_LIMIT, waitDelivered, withEspf } from './lib/delivery.ts';
import { CpuMeter, POSTGRES_PARTS } from './lib/cpu.ts';
import type { BenchContext, Figure, RunResult } from './lib/figure.ts';
import { round } from './lib/util.ts';

export interface E2eParams extends Record<string, unknown> {
  readonly events: number;
  readonly burstRows: number;
  readonly tokenRate: number;
  readonly tokenBurstiness: number;
  readonly timeoutS: number;
}

function e2eFigure(name: string, shapedStep: boolean): Figure<E2eParams> {
  return {
  name,
  budgetS: { full: 130, quick: 15 },
  params: (ctx) => ({
    events: Math.min(ctx.quick ? 5_000 : 100_000, ctx.seed.accounts[1] - ctx.seed.accounts[0] + 1),
    burstRows: 1000,
    ...NO_RATE_LIMIT,
    timeoutS: ctx.quick ? 12 : 120,
  }),
  async run(ctx: BenchContext, p: E2eParams, run: number): Promise<RunResult> {
    return withEspf(ctx, name, run, {
      tokenRate: p.tokenRate, tokenBurstiness: p.tokenBurstiness, ...ACCOUNT_BLOCKS_TO_SENDER, shapedStep,
    }, async (r) => {
      const after = await lastEventId(r.db);
      const lo = ctx.seed.accounts[0];
      const cpu = await CpuMeter.begin(r.db, r.espf.child.pid!, ctx.receiver.child.pid!);
      const t0 = Date.now();
      await commitBursts(r.db, lo, p.events, p.burstRows);
      const committedAt = Date.now();
      const d = await waitDelivered(ctx, r, { after, expected: p.events, timeoutMs: allowance(ctx, p.timeoutS * 1000) });
      const end = d.complete ? Math.max(d.lastFinishedAt, d.receivedAllAt) : Date.now();
      const used = await cpu.end(r.db);
      const perEvent = (s: number) => round((s * 1e6) / Math.max(1, d.delivered), 1);
      const seconds = (end - t0) / 1000;
      return {
        values: {
          e2e_eps: round(d.delivered / seconds, 0),
          cpu_us_espf: perEvent(used.espf), cpu_us_postgres: perEvent(used.postgres), cpu_us_receiver: perEvent(used.receiver),
        },
        details: {
          complete: d.complete, delivered: d.delivered, seconds: round(seconds, 3),
          commit_seconds: round((committedAt - t0) / 1000, 3),
          last_2xx_after_s: round((d.receivedAllAt - t0) / 1000, 3),
          last_status_row_after_s: round((d.lastFinishedAt - t0) / 1000, 3),
          receiver_duplicates: d.receiverDuplicates,
          cpu_us_espf_system: perEvent(used.espfSystem),
          // cpu_us_postgres by process: the walsender, espf run's connections, the billing writes, background processes
          ...Object.fromEntries(POSTGRES_PARTS.map((part) => [`cpu_us_postgres_${part}`, perEvent(used.postgresParts[part])])),
        },
      };
    });
  },
  };
}

export const e2e = e2eFigure('e2e', false);
export const e2eShaped = e2eFigure('e2e_shaped', true);
