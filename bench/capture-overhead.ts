/**
 * capture_overhead_ratio: pgbench TPS of a billing write mix with every event
 * type enabled ÷ TPS with capture off, on a durable cluster, alternating on and
 * off in short phases within one run: `pairs` adjacent (off, on) pairs, in ABBA
 * order, a CHECKPOINT before each phase. The run's ratio is the median of the
 * pairs' on/off ratios, so drift (outbox and table growth, cache) and bursts of
 * other work on the machine fall on both sides or drop out.
 *
 * The mix (pgbench -f file@weight, each statement its own transaction):
 *   balance.sql @8   UPDATE billing.account SET balance = balance + delta  (balances near 0: funds appear/disappear)
 *   block.sql   @1   UPDATE billing.account SET blocked = NOT blocked      (Account/Blocked or Unblocked every time)
 *   insert.sql  @1   INSERT INTO billing.account                           (Account/New)
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { sql } from '@databases/pg';
import { cloneDatabase, dropDatabase, withDb } from './lib/db.ts';
import type { BenchContext, Figure, RunResult } from './lib/figure.ts';
import { log, median, round, Unavailable } from './lib/util.ts';

const exec = promisify(execFile);

export interface CaptureParams extends Record<string, unknown> {
  readonly clients: number;
  readonly threads: number;
  readonly secondsPerPhase: number;
  readonly pairs: number;
  readonly weights: { readonly balance: number; readonly block: number; readonly insert: number };
  readonly pgbench: string;
  readonly pgbenchVersion: string;
}

export function findPgbench(binDir?: string): string | undefined {
  const onPath = spawnSync('sh', ['-c', 'command -v pgbench'], { encoding: 'utf8' });
  if (onPath.status === 0 && onPath.stdout.trim()) return onPath.stdout.trim();
  for (const dir of [binDir, '/usr/lib/postgresql/18/bin', '/usr/lib/postgresql/17/bin', '/usr/lib/postgresql/16/bin', '/usr/lib/postgresql/15/bin']) {
    if (dir && existsSync(path.join(dir, 'pgbench'))) return path.join(dir, 'pgbench');
  }
  return undefined;
}

export function scripts(lo: number, hi: number, customer: number): Record<string, string> {
  return {
    'balance.sql': `\\set aid random(${lo}, ${hi})\n\\set delta random(-30, 30)\nUPDATE billing.account SET balance = balance + :delta WHERE i_account = :aid;\n`,
    'block.sql': `\\set aid random(${lo}, ${hi})\nUPDATE billing.account SET blocked = NOT blocked WHERE i_account = :aid;\n`,
    'insert.sql': `\\set p random(1, 10)\nINSERT INTO billing.account (id, i_customer, i_product, balance) VALUES ('pgb' || nextval('public.bench_account_seq'), ${customer}, :p, 10);\n`,
  };
}

export async function pgbench(p: CaptureParams, url: string, dir: string): Promise<{ tps: number; transactions: number }> {
  const u = new URL(url);
  const args = [
    '-n', '-M', 'prepared', '-c', String(p.clients), '-j', String(p.threads), '-T', String(p.secondsPerPhase),
    '-f', `${path.join(dir, 'balance.sql')}@${p.weights.balance}`,
    '-f', `${path.join(dir, 'block.sql')}@${p.weights.block}`,
    '-f', `${path.join(dir, 'insert.sql')}@${p.weights.insert}`,
    '-h', u.hostname, '-p', u.port || '5432', '-U', decodeURIComponent(u.username || 'postgres'), decodeURIComponent(u.pathname.slice(1)),
  ];
  const env = { ...process.env, ...(u.password ? { PGPASSWORD: decodeURIComponent(u.password) } : {}) };
  const { stdout } = await exec(p.pgbench, args, { encoding: 'utf8', env, maxBuffer: 16 << 20 });
  const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(stdout);
  const tx = /number of transactions actually processed: (\d+)/.exec(stdout);
  const failed = /number of failed transactions: (\d+)/.exec(stdout);
  if (!tps) throw new Error(`pgbench: no tps in its output: ${stdout.slice(-300)}`);
  if (failed && Number(failed[1]) > 0) throw new Error(`pgbench: ${failed[1]} failed transactions`);
  return { tps: Number(tps[1]), transactions: Number(tx?.[1] ?? 0) };
}

export const captureOverhead: Figure<CaptureParams> = {
  name: 'capture_overhead',
  budgetS: { full: 165, quick: 18 },
  params: (ctx) => {
    const bin = findPgbench(ctx.server.cluster?.binDir);
    const version = bin ? spawnSync(bin, ['--version'], { encoding: 'utf8' }).stdout.trim() : '';
    return {
      clients: Number(process.env.BENCH_PGBENCH_CLIENTS ?? 4),
      threads: Math.min(2, os.cpus().length),
      secondsPerPhase: 2,
      pairs: ctx.quick ? 3 : 10,
      weights: { balance: 8, block: 1, insert: 1 },
      pgbench: bin ?? '',
      pgbenchVersion: version,
    };
  },
  async run(ctx: BenchContext, p: CaptureParams, run: number): Promise<RunResult> {
    if (!p.pgbench) throw new Unavailable('pgbench not found on PATH nor in the PostgreSQL bin directory');
    const name = ctx.name('capture', run);
    const url = await cloneDatabase(ctx.server.adminUrl, ctx.seed.template, name);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'espf-bench-pgbench-'));
    try {
      for (const [file, text] of Object.entries(scripts(ctx.seed.accounts[0], ctx.seed.accounts[1], ctx.seed.bigCustomer + 1))) await writeFile(path.join(dir, file), text);
      const on: number[] = [];
      const off: number[] = [];
      let eventsOn = 0;
      const ratios: number[] = [];
      await withDb(url, async (db) => {
        await db.query(sql`CREATE SEQUENCE IF NOT EXISTS public.bench_account_seq`);
        const setCapture = (enabled: boolean) => db.query(sql`UPDATE espf.event_types SET enabled = ${enabled}`);
        const phase = async (enabled: boolean): Promise<number> => {
          await setCapture(enabled);
          const [{ n: before }] = await db.query(sql`SELECT count(*)::int AS n FROM espf.events`) as [{ n: number }];
          await db.query(sql`CHECKPOINT`);
          const r = await pgbench(p, url, dir);
          const [{ n: after }] = await db.query(sql`SELECT count(*)::int AS n FROM espf.events`) as [{ n: number }];
          if (enabled) { on.push(r.tps); eventsOn += after - before; } else off.push(r.tps);
          if (!enabled && after !== before) throw new Error(`capture off but ${after - before} events were written`);
          return r.tps;
        };
        // A short warm-up (caches, prepared plans), not counted.
        await setCapture(false);
        await pgbench({ ...p, secondsPerPhase: 1 }, url, dir);
        for (let i = 0; i < p.pairs; i++) {
          // ABBA: off,on / on,off / off,on …
          const offFirst = i % 4 === 0 || i % 4 === 3;
          let tOn: number, tOff: number;
          if (offFirst) { tOff = await phase(false); tOn = await phase(true); } else { tOn = await phase(true); tOff = await phase(false); }
          ratios.push(tOn / tOff);
          log(`  pair ${i + 1}/${p.pairs}: on ${round(tOn, 0)} / off ${round(tOff, 0)} tps = ${round(tOn / tOff, 3)}`);
        }
        await setCapture(false);
      }, 1);
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      return {
        values: { capture_overhead_ratio: round(median(ratios), 3) },
        details: { pair_ratios: ratios.map((x) => round(x, 3)), ratio_of_mean_tps: round(mean(on) / mean(off), 3), tps_on: on.map((x) => round(x, 0)), tps_off: off.map((x) => round(x, 0)), median_tps_on: round(median(on), 0), median_tps_off: round(median(off), 0), events_written_on: eventsOn },
      };
    } finally {
      await rm(dir, { recursive: true, force: true });
      await dropDatabase(ctx.server.adminUrl, name);
    }
  },
};
