/**
 * shards: the e2e figure (bench/e2e.ts) with the instance split into 1 and into
 * 2 shards (README "Shards"), one `espf run --shard K` process each, all on this
 * machine; and what each slot costs PostgreSQL: the CPU time of each slot's
 * walsender (/proc/<pid>/stat, utime + stime) over the run, per 1,000 events
 * committed. Every walsender decodes all the WAL; its publication's row filter
 * only decides what it sends.
 */
import { readFileSync } from 'node:fs';
import { sql } from '@databases/pg';
import { connect } from '../src/db/connect.ts';
import { cloneDatabase, dropDatabase } from './lib/db.ts';
import { ACCOUNT_BLOCKS_TO_SENDER, allowance, commitBursts, lastEventId, NO_RATE_LIMIT, waitDelivered } from './lib/delivery.ts';
import { configureEspf, EspfProcess } from './lib/espf.ts';
import type { BenchContext, Figure, RunResult } from './lib/figure.ts';
import { log, round } from './lib/util.ts';

export interface ShardsParams extends Record<string, unknown> {
  readonly events: number;
  readonly burstRows: number;
  readonly timeoutS: number;
}

/** CPU seconds (user + system) a process has used so far; NaN when it cannot be read. */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (100 per second on Linux)
  } catch {
    return NaN;
  }
}

async function oneRun(ctx: BenchContext, p: ShardsParams, run: number, shards: number): Promise<Record<string, number>> {
  const instance = ctx.name(`shards${shards}`, run);
  const url = await cloneDatabase(ctx.server.adminUrl, ctx.seed.template, instance);
  const db = connect({ connectionString: url, poolSize: 4, applicationName: 'espf-bench' });
  const procs: EspfProcess[] = [];
  try {
    await configureEspf(db, {
      instance, receiverUrl: ctx.receiver.url, ...NO_RATE_LIMIT, ...ACCOUNT_BLOCKS_TO_SENDER,
    });
    await db.query(sql`UPDATE espf.handlers SET shards = ${shards} WHERE instance = ${instance}`);
    await ctx.receiver.reset();
    for (let k = 0; k < shards; k++) procs.push(await EspfProcess.start(url, instance, 30_000, shards > 1 ? ['--shard', String(k)] : []));
    const senders: { pid: number }[] = await db.query(sql`
      SELECT active_pid AS pid FROM pg_replication_slots WHERE active AND database = current_database() AND slot_name LIKE ${`espf_${instance}%`}`);
    const cpu0 = senders.map((s) => cpuSeconds(s.pid));
    const after = await lastEventId(db);
    const lo = ctx.seed.accounts[0];
    const t0 = Date.now();
    await commitBursts(db, lo, p.events, p.burstRows);
    const r = { db, espf: procs[0]!, url, instance, restart: async () => undefined };
    const d = await waitDelivered(ctx, r, { after, expected: p.events, timeoutMs: allowance(ctx, p.timeoutS * 1000) });
    const end = d.complete ? Math.max(d.lastFinishedAt, d.receivedAllAt) : Date.now();
    const cpu = senders.map((s, i) => cpuSeconds(s.pid) - cpu0[i]!);
    const perSlotMs = cpu.reduce((a, b) => a + b, 0) / Math.max(1, cpu.length) * 1000;
    log(`  ${shards} shard(s): ${d.delivered} delivered in ${round((end - t0) / 1000, 2)} s; walsender CPU ${cpu.map((c) => round(c, 2)).join(' + ')} s`);
    if (!d.complete) throw new Error(`${shards} shard(s): ${d.delivered} of ${p.events} delivered in time`);
    return {
      eps: round(d.delivered / ((end - t0) / 1000), 0),
      decode_ms_per_1k: round(perSlotMs / (p.events / 1000), 2),
    };
  } finally {
    for (const e of procs) await e.stop().catch(() => undefined);
    await db.dispose().catch(() => undefined);
    await dropDatabase(ctx.server.adminUrl, instance).catch((err: unknown) => log(`drop ${instance}: ${String(err)}`));
  }
}

export const shards: Figure<ShardsParams> = {
  name: 'shards',
  budgetS: { full: 240, quick: 40 },
  params: (ctx) => ({
    events: Math.min(ctx.quick ? 5_000 : 50_000, ctx.seed.accounts[1] - ctx.seed.accounts[0] + 1),
    burstRows: 1000,
    timeoutS: ctx.quick ? 15 : 90,
  }),
  async run(ctx: BenchContext, p: ShardsParams, run: number): Promise<RunResult> {
    const one = await oneRun(ctx, p, run, 1);
    const two = await oneRun(ctx, p, run, 2);
    return {
      values: {
        e2e_eps_1_shard: one.eps!, e2e_eps_2_shards: two.eps!,
        decode_cpu_ms_per_1k_events_1_slot: one.decode_ms_per_1k!, decode_cpu_ms_per_1k_events_per_slot_2_slots: two.decode_ms_per_1k!,
      },
      details: { events: p.events, complete: true },
    };
  },
};
