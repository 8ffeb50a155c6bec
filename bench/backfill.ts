/**
 * backfill_rows_per_s: `espf backfill Account/New` (src/rules/backfill.ts, default
 * batch size and pace: it yields to billing, src/rules/backfill-pace.ts; or the
 * pace of BENCH_BACKFILL_PACE) over 1,000,000 accounts (100,000 with BENCH_QUICK): rows ÷ seconds of
 * the whole backfill; and the billing write TPS while it runs ÷ the TPS just before
 * (the capture-overhead pgbench mix, every type enabled in both phases).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from '@databases/pg';
import { runBackfill } from '../src/rules/backfill.ts';
import type { Pace } from '../src/rules/backfill-pace.ts';
import { findPgbench, pgbench, scripts, type CaptureParams } from './capture-overhead.ts';
import { cloneDatabase, dropDatabase, withDb } from './lib/db.ts';
import type { BenchContext, Figure, RunResult } from './lib/figure.ts';
import { log, round, Unavailable } from './lib/util.ts';

export interface BackfillParams extends CaptureParams {
  readonly accounts: number;
  readonly batchSize: number;
  /** BENCH_BACKFILL_PACE: yield (the default), fast, or a number of rows per second. */
  readonly pace: string;
}

function paceOf(v: string): Pace {
  if (v === 'yield' || v === 'fast') return { kind: v };
  if (/^[1-9]\d*$/.test(v)) return { kind: 'rate', rowsPerS: Number(v) };
  throw new Error(`BENCH_BACKFILL_PACE '${v}': yield, fast or rows per second`);
}

export const backfill: Figure<BackfillParams> = {
  name: 'backfill',
  budgetS: { full: 240, quick: 40 },
  params: (ctx) => ({
    accounts: ctx.quick ? 100_000 : 1_000_000,
    batchSize: Number(process.env.BENCH_BACKFILL_BATCH ?? 1000),
    pace: process.env.BENCH_BACKFILL_PACE ?? 'yield',
    clients: Number(process.env.BENCH_PGBENCH_CLIENTS ?? 4),
    threads: Math.min(2, os.cpus().length),
    secondsPerPhase: ctx.quick ? 3 : 10,
    pairs: 1,
    weights: { balance: 8, block: 1, insert: 1 },
    pgbench: findPgbench(ctx.server.cluster?.binDir) ?? '',
    pgbenchVersion: '',
  }),
  async run(ctx: BenchContext, p: BackfillParams, run: number): Promise<RunResult> {
    if (!p.pgbench) throw new Unavailable('pgbench not found on PATH nor in the PostgreSQL bin directory');
    const name = ctx.name('backfill', run);
    const url = await cloneDatabase(ctx.server.adminUrl, ctx.seed.template, name);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'espf-bench-pgbench-'));
    try {
      for (const [file, text] of Object.entries(scripts(ctx.seed.accounts[0], ctx.seed.accounts[1], ctx.seed.bigCustomer + 1))) await writeFile(path.join(dir, file), text);
      return await withDb(url, async (db) => {
        await db.query(sql`CREATE SEQUENCE IF NOT EXISTS public.bench_account_seq`);
        // Up to p.accounts accounts (capture is off while they are added).
        const [{ n }] = await db.query(sql`SELECT count(*)::int AS n FROM billing.account`) as [{ n: number }];
        if (n < p.accounts) {
          await db.query(sql`INSERT INTO billing.account (id, i_customer, i_product, balance)
            SELECT 'b' || g, c.lo + g % (c.hi - c.lo + 1), ${ctx.seed.products[0]} + g % 10, 10
              FROM generate_series(1, ${p.accounts - n}) g,
                   (SELECT min(i_customer) AS lo, max(i_customer) AS hi FROM billing.customer) c`);
        }
        await db.query(sql`VACUUM (ANALYZE) billing.account`);
        await db.query(sql`UPDATE espf.event_types SET enabled = true`);
        await db.query(sql`CHECKPOINT`);
        const before = await pgbench(p, url, dir);
        log(`  billing idle: ${round(before.tps, 0)} tps`);
        const t0 = Date.now();
        let lastReason = '';
        const bf = runBackfill(db, {
          rule: 'Account/New', batchSize: p.batchSize, pace: paceOf(p.pace), resume: false, allHandlers: true,
          onProgress: (pr) => { if (!pr.finished) lastReason = pr.pace.reason; },
        });
        const during = await pgbench(p, url, dir);
        const done = await bf;
        const seconds = (Date.now() - t0) / 1000;
        const overlapped = seconds >= p.secondsPerPhase;
        log(`  backfill: ${done.rowsDone} rows in ${round(seconds, 1)} s; billing during: ${round(during.tps, 0)} tps${overlapped ? '' : ' (the backfill ended before pgbench: the TPS ratio is a bound)'}`);
        log(`  backfill pace (${p.pace}) at the end: ${lastReason}`);
        return {
          values: { backfill_rows_per_s: round(done.rowsDone / seconds, 0), billing_tps_ratio: round(during.tps / before.tps, 3) },
          details: { rows: done.rowsDone, events: done.events, seconds: round(seconds, 1), tps_before: round(before.tps, 0), tps_during: round(during.tps, 0), backfill_outlasted_pgbench: overlapped, complete: overlapped },
        };
      }, 2);
    } finally {
      await rm(dir, { recursive: true, force: true });
      await dropDatabase(ctx.server.adminUrl, name);
    }
  },
};
