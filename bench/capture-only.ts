/**
 * Runs the capture_overhead figure alone (for iterating on the capture rules):
 * a throwaway durable cluster, the same template as `make bench` (BENCH_QUICK=1:
 * the small one), BENCH_RUNS runs (default 3) of bench/capture-overhead.ts;
 * prints each run's ratio and median TPS on/off, and the median ratio.
 * Writes no results file.
 *
 *   BENCH_RUNS=3 node --import tsx bench/capture-only.ts
 *
 * CAPTURE_BASE=<git ref> also builds a second template from that commit's
 * migrations/ and sql/ and alternates runs (base, working tree, base, …) in the
 * same cluster, so both see the same load on a shared machine.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { captureOverhead } from './capture-overhead.ts';
import { createTemplate, startServer } from './lib/db.ts';
import type { BenchContext } from './lib/figure.ts';
import { ROOT } from './lib/paths.ts';
import { log, median, round } from './lib/util.ts';

const quick = process.env.BENCH_QUICK === '1';
const runs = Math.max(1, Number(process.env.BENCH_RUNS ?? 3));
const base = process.env.CAPTURE_BASE;

async function main(): Promise<void> {
  const server = await startServer();
  let baseDir: string | undefined;
  try {
    const sizes = quick ? { fanoutAccounts: 5_000, accounts: 10_000 } : { fanoutAccounts: 100_000, accounts: 100_000 };
    const variants: { label: string; template: string; dirs?: { migrations: string; repeatable: string } }[] = [];
    if (base) {
      baseDir = mkdtempSync(path.join(os.tmpdir(), 'espf-capture-base-'));
      execFileSync('sh', ['-c', `git -C "${ROOT}" archive "${base}" migrations sql | tar -x -C "${baseDir}"`]);
      variants.push({ label: `base ${base}`, template: `espf_bench_tpl_base_${process.pid}`, dirs: { migrations: path.join(baseDir, 'migrations'), repeatable: path.join(baseDir, 'sql') } });
    }
    variants.push({ label: 'working tree', template: `espf_bench_tpl_${process.pid}` });
    const seeds = [];
    for (const v of variants) {
      log(`seeding ${v.template} (${v.label})`);
      seeds.push(await createTemplate(server.adminUrl, v.template, sizes, v.dirs));
    }
    const ratios: number[][] = variants.map(() => []);
    for (let i = 1; i <= runs; i++) {
      for (const [k, v] of variants.entries()) {
        const ctx = {
          quick, server, seed: seeds[k]!, receiver: undefined as never,
          deadline: Number.POSITIVE_INFINITY,
          name: (figure: string, run: number) => `bench_${figure}_${k}_${run}_${process.pid}`,
        } as BenchContext;
        const r = await captureOverhead.run(ctx, captureOverhead.params(ctx), i);
        const d = r.details as Record<string, unknown>;
        log(`${v.label} run ${i}: ratio ${r.values.capture_overhead_ratio} (ratio of mean tps ${d.ratio_of_mean_tps}; median tps on ${d.median_tps_on} / off ${d.median_tps_off}; events ${d.events_written_on}; load ${round(os.loadavg()[0]!, 2)})`);
        ratios[k]!.push(r.values.capture_overhead_ratio!);
      }
    }
    for (const [k, v] of variants.entries()) log(`${v.label}: capture_overhead_ratio median ${median(ratios[k]!)} of ${runs} runs: ${ratios[k]!.join(', ')}`);
  } finally {
    await server.stop();
    if (baseDir) rmSync(baseDir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
