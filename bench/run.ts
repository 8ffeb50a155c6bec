/**
 * `make bench`: starts a throwaway durable PostgreSQL (or uses DATABASE_URL), a
 * receiver process and, for the delivery figures, `espf run`; measures the
 * figures of bench/README.md (each the median of BENCH_RUNS runs, default 3); writes
 * bench/results/latest.json and prints a table on stdout.
 *
 *   BENCH_QUICK=1     small sizes, 1 run: a smoke run of 2-3 minutes
 *   BENCH_RUNS=n      runs per figure
 *   BENCH_ONLY=a,b    only these figures (http_ceiling, capture_overhead, e2e, e2e_shaped, latency, fanout, bigtx, rate_accuracy, backlog, outage, backfill, console, shards)
 *   BENCH_BUDGET_SCALE=x  scales every figure's time budget (default 1): once a figure's budget
 *                     is spent its later runs are skipped and its waits cut short
 *   BENCH_OUT=path    where to write the JSON (default bench/results/latest.json)
 */
import { spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { captureOverhead } from './capture-overhead.ts';
import { backfill } from './backfill.ts';
import { e2e, e2eShaped } from './e2e.ts';
import { fanout } from './fanout.ts';
import { httpCeiling } from './http-ceiling.ts';
import { latency } from './latency.ts';
import { rateAccuracy } from './rate-accuracy.ts';
import { backlog } from './backlog.ts';
import { bigtx } from './bigtx.ts';
import { outage } from './outage.ts';
import { consolePages } from './console.ts';
import { shards } from './shards.ts';
import { createTemplate, dropDatabase, serverFacts, startServer, withDatabase, type Server } from './lib/db.ts';
import type { BenchContext, Figure, RunResult } from './lib/figure.ts';
import { BENCH_DIR, ROOT } from './lib/paths.ts';
import { Receiver } from './lib/receiver-client.ts';
import { log, median, round, Unavailable } from './lib/util.ts';

const quick = process.env.BENCH_QUICK === '1';
const runs = Math.max(1, Number(process.env.BENCH_RUNS ?? (quick ? 1 : 3)));
const budgetScale = Number(process.env.BENCH_BUDGET_SCALE ?? 1);
const only = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',').map((s) => s.trim())) : undefined;
const outFile = process.env.BENCH_OUT ?? path.join(BENCH_DIR, 'results', 'latest.json');
const fanoutAccounts = process.env.BENCH_FANOUT_ACCOUNTS ? Number(process.env.BENCH_FANOUT_ACCOUNTS) : undefined;

const FIGURES: Figure<any>[] = [httpCeiling, captureOverhead, e2e, e2eShaped, latency, fanout, bigtx, rateAccuracy, backlog, outage, backfill, consolePages, shards];

type FigureOutcome =
  | { status: 'ok'; values: Record<string, number>; runs: RunResult[]; errors: string[]; skippedRuns: number }
  | { status: 'unavailable' | 'error'; reason: string; runs: RunResult[]; errors: string[] };

/** One figure's runs so far: its results, the errors of failed runs, the runs skipped for its budget. */
interface Runs { readonly results: RunResult[]; readonly errors: string[]; skipped: number; unavailable?: string }

/** Run `i` of figure `f`, added to `into`; false when the figure is unavailable (no more runs then). */
async function runOnce(ctx: BenchContext, f: Figure<any>, params: Record<string, unknown>, i: number, into: Runs): Promise<boolean> {
  const runStart = Date.now();
  log(`${f.name}: run ${i}/${runs}`);
  try {
    const load = os.loadavg()[0]!;
    const r = await f.run(ctx, params, i);
    log(`${f.name}: run ${i}: ${JSON.stringify(r.values)}`);
    into.results.push({ ...r, details: { ...r.details, seconds_run: round((Date.now() - runStart) / 1000, 1), load_avg_1m_at_start: round(load, 2) } });
  } catch (err) {
    if (err instanceof Unavailable) {
      log(`${f.name}: unavailable: ${err.message}`);
      into.unavailable = err.message;
      return false;
    }
    const msg = err instanceof Error ? err.message : String(err);
    log(`${f.name}: run ${i} failed: ${msg}`);
    into.errors.push(msg);
  }
  return true;
}

/** A figure's outcome from its runs: each value the median over the runs. */
function summarize(r: Runs): FigureOutcome {
  const { results, errors } = r;
  if (r.unavailable !== undefined) return { status: 'unavailable', reason: r.unavailable, runs: results, errors };
  if (results.length === 0) return { status: 'error', reason: errors.join('; ') || 'no run completed', runs: results, errors };
  // A run cut short (complete: false) gives a bound, not a measurement: the median is
  // taken over the complete runs when there is one.
  const complete = results.filter((x) => x.details?.complete !== false);
  const basis = complete.length > 0 ? complete : results;
  const values: Record<string, number> = {};
  const keys = new Set(basis.flatMap((x) => Object.keys(x.values)));
  for (const key of keys) values[key] = round(median(basis.map((x) => x.values[key]!).filter((x) => Number.isFinite(x))), 3);
  return { status: 'ok', values, runs: results, errors, skippedRuns: r.skipped };
}

async function measure(ctx: BenchContext, f: Figure<any>, params: Record<string, unknown>): Promise<FigureOutcome> {
  const r: Runs = { results: [], errors: [], skipped: 0 };
  let lastRunMs = 0;
  for (let i = 1; i <= runs; i++) {
    // Another run that would end well past the figure's budget is skipped (and recorded as such).
    if (i > 1 && Date.now() + lastRunMs * 1.2 > ctx.deadline) { r.skipped = runs - i + 1; log(`${f.name}: budget spent, ${r.skipped} run(s) skipped`); break; }
    const runStart = Date.now();
    if (!(await runOnce(ctx, f, params, i, r))) break;
    lastRunMs = Date.now() - runStart;
  }
  return summarize(r);
}

/**
 * Two figures whose quotient is a goal (e2e_shaped ÷ e2e), measured in turns:
 * run i of both before run i + 1 of either, first one then the other, then the
 * other way round (ABBA), so that the machine's drift and a second run's extra
 * cost fall on both alike. Each run of `b` also gets `ratio_key`: its
 * `value_key` ÷ that of the run of `a` beside it (their median is the figure's).
 */
async function measureInTurns(ctx: BenchContext, a: Figure<any>, b: Figure<any>, pa: Record<string, unknown>, pb: Record<string, unknown>,
                              valueKey: string, ratioKey: string): Promise<[FigureOutcome, FigureOutcome]> {
  const ra: Runs = { results: [], errors: [], skipped: 0 };
  const rb: Runs = { results: [], errors: [], skipped: 0 };
  let lastPairMs = 0;
  for (let i = 1; i <= runs; i++) {
    if (i > 1 && Date.now() + lastPairMs * 1.2 > ctx.deadline) {
      ra.skipped = rb.skipped = runs - i + 1;
      log(`${a.name}, ${b.name}: budget spent, ${ra.skipped} run(s) of each skipped`);
      break;
    }
    const pairStart = Date.now();
    const [na, nb] = [ra.results.length, rb.results.length];
    const order: [Figure<any>, Record<string, unknown>, Runs][] = [[a, pa, ra], [b, pb, rb]];
    if (i % 2 === 0) order.reverse();
    for (const [f, p, r] of order) if (r.unavailable === undefined) await runOnce(ctx, f, p, i, r);
    if (ra.unavailable !== undefined && rb.unavailable !== undefined) break;
    const ya = ra.results.length > na ? ra.results[na]!.values[valueKey] : undefined;
    const yb = rb.results.length > nb ? rb.results[nb]!.values[valueKey] : undefined;
    if (ya && yb !== undefined) {
      const run = rb.results[nb]!;
      rb.results[nb] = { ...run, values: { ...run.values, [ratioKey]: round(yb / ya, 3) } };
    }
    lastPairMs = Date.now() - pairStart;
  }
  return [summarize(ra), summarize(rb)];
}

/** Figures measured in turns when both are run: [a, b, the value compared, the key of b's run ÷ a's]. */
const IN_TURNS: readonly [string, string, string, string][] = [['e2e', 'e2e_shaped', 'cpu_us_espf', 'cpu_us_espf_per_e2e']];

interface Row { figure: string; measured: string; goal: string; met: string }

function goalRows(out: Record<string, FigureOutcome>): { rows: Row[]; goals: Record<string, unknown>[] } {
  const rows: Row[] = [];
  const goals: Record<string, unknown>[] = [];
  const v = (fig: string, key: string): number | undefined => {
    const o = out[fig];
    return o?.status === 'ok' ? o.values[key] : undefined;
  };
  const incomplete = (fig: string) => {
    const o = out[fig];
    return o?.status === 'ok' && o.runs.length > 0 && o.runs.every((r) => r.details?.complete === false) ? ' (incomplete)' : '';
  };
  const na = (fig: string) => {
    const o = out[fig];
    if (!o) return 'not run';
    return o.status === 'ok' ? '' : `${o.status}`;
  };
  const add = (figure: string, fig: string, measured: number | undefined, unit: string, goal: string, met: boolean | undefined) => {
    rows.push({ figure, measured: measured === undefined ? na(fig) : `${measured}${unit}${incomplete(fig)}`, goal, met: measured === undefined || met === undefined ? '-' : met ? 'yes' : 'NO' });
    goals.push({ figure, measured: measured ?? null, goal, met: measured === undefined ? null : met ?? null, ...(incomplete(fig) ? { incomplete: true } : {}) });
  };
  const ceiling = v('http_ceiling', 'http_ceiling_rps');
  add('http_ceiling_rps', 'http_ceiling', ceiling, ' req/s', '(the ceiling)', undefined);
  const bareCpu = v('http_ceiling', 'cpu_us_client');
  add('http_ceiling cpu per request: bare client', 'http_ceiling', bareCpu, ' us', '(the reference)', undefined);
  // What espf costs per event beside what a bare client costs per request (both need http_ceiling in the run).
  const perBare = (fig: string) => {
    const cpu = v(fig, 'cpu_us_espf');
    return cpu !== undefined && bareCpu ? round(cpu / bareCpu, 2) : undefined;
  };
  const e2eEps = v('e2e', 'e2e_eps');
  const e2eGoal = Math.max(4000, 0.6 * (ceiling ?? 0));
  add('e2e_eps', 'e2e', e2eEps, ' ev/s', `>= ${round(e2eGoal, 0)} (0.6 x ceiling, and >= 4000)`, e2eEps === undefined ? undefined : e2eEps >= e2eGoal);
  const ratio0 = e2eEps !== undefined && ceiling ? round(e2eEps / ceiling, 2) : undefined;
  add('e2e_eps / http_ceiling_rps', 'e2e', ratio0, ' x', '>= 0.6', ratio0 === undefined ? undefined : ratio0 >= 0.6);
  for (const part of ['espf', 'postgres', 'receiver'] as const) {
    add(`e2e cpu per event: ${part}`, 'e2e', v('e2e', `cpu_us_${part}`), ' us', '(the cost split)', undefined);
  }
  add('e2e cpu per event: espf / bare client', 'e2e', perBare('e2e'), ' x', '-', undefined);
  const shapedEps = v('e2e_shaped', 'e2e_eps');
  add('e2e_shaped_eps', 'e2e_shaped', shapedEps, ' ev/s', '- (one-step shaped body)', undefined);
  const plainCpu = v('e2e', 'cpu_us_espf');
  const shapedCpu = v('e2e_shaped', 'cpu_us_espf');
  add('e2e_shaped cpu per event: espf', 'e2e_shaped', shapedCpu, ' us', '-', undefined);
  // The median of the run-by-run quotients when the two ran in turns; else the quotient of the medians.
  const pairedRatio = v('e2e_shaped', 'cpu_us_espf_per_e2e');
  const shapedRatio = pairedRatio !== undefined ? round(pairedRatio, 2) : plainCpu && shapedCpu !== undefined ? round(shapedCpu / plainCpu, 2) : undefined;
  add('e2e_shaped cpu per event: espf / bare client', 'e2e_shaped', perBare('e2e_shaped'), ' x', '-', undefined);
  add('e2e_shaped / e2e cpu per event (espf)', 'e2e_shaped', shapedRatio, ' x', '<= 1.15', shapedRatio === undefined ? undefined : shapedRatio <= 1.15);
  const p50 = v('latency', 'p50');
  add('latency_ms.p50', 'latency', p50, ' ms', '<= 10', p50 === undefined ? undefined : p50 <= 10);
  add('latency_ms.p95', 'latency', v('latency', 'p95'), ' ms', '-', undefined);
  const p99 = v('latency', 'p99');
  add('latency_ms.p99', 'latency', p99, ' ms', '<= 50', p99 === undefined ? undefined : p99 <= 50);
  const ratio = v('capture_overhead', 'capture_overhead_ratio');
  add('capture_overhead_ratio', 'capture_overhead', ratio, '', '>= 0.90', ratio === undefined ? undefined : ratio >= 0.9);
  const mean = v('rate_accuracy', 'mean_rate');
  const target = v('rate_accuracy', 'token_rate') ?? 50;
  add('rate_accuracy.mean_rate', 'rate_accuracy', mean, ' req/s', `${target} +/- 3 %`, mean === undefined ? undefined : Math.abs(mean - target) <= 0.03 * target);
  const win = v('rate_accuracy', 'max_window');
  add('rate_accuracy.max_window', 'rate_accuracy', win, ' req', '<= 60', win === undefined ? undefined : win <= 60);
  const bl = v('backlog', 'backlog_eps');
  add('backlog_eps', 'backlog', bl, ' ev/s', '>= e2e_eps', bl === undefined || e2eEps === undefined ? undefined : bl >= e2eEps);
  const rss = v('backlog', 'peak_rss_mb');
  add('peak_rss_mb', 'backlog', rss, ' MB', '<= 200', rss === undefined ? undefined : rss <= 200);
  // One transaction of every account of the big customer: as fast as a backlog of small ones, in as little memory.
  const big = v('bigtx', 'bigtx_eps');
  add('bigtx_eps', 'bigtx', big, ' ev/s', bl === undefined ? '>= 0.8 x backlog_eps' : `>= ${round(0.8 * bl, 0)} (0.8 x backlog_eps)`,
    big === undefined || bl === undefined ? undefined : big >= 0.8 * bl);
  const bigRss = v('bigtx', 'bigtx_peak_rss_mb');
  add('bigtx.peak_rss_mb', 'bigtx', bigRss, ' MB', '<= 200', bigRss === undefined ? undefined : bigRss <= 200);
  // The customer block: its events (dispatch included) at the bigtx rate goal, accounts ÷ (0.8 x backlog_eps) seconds.
  const fan = v('fanout', 'fanout_s');
  const fanAccounts = v('fanout', 'fanout_accounts');
  const fanGoal = bl === undefined || fanAccounts === undefined ? undefined : fanAccounts / (0.8 * bl);
  add('fanout_s', 'fanout', fan, ' s', fanGoal === undefined ? '<= accounts / (0.8 x backlog_eps) s' : `<= ${round(fanGoal, 1)} s (${fanAccounts} accounts / (0.8 x backlog_eps))`,
    fan === undefined || fanGoal === undefined ? undefined : fan <= fanGoal);
  const fanRss = v('fanout', 'fanout_peak_rss_mb');
  add('fanout.peak_rss_mb', 'fanout', fanRss, ' MB', '<= 200', fanRss === undefined ? undefined : fanRss <= 200);
  const oRss = v('outage', 'peak_rss_outage_mb');
  add('outage.peak_rss_mb', 'outage', oRss, ' MB', '<= 200', oRss === undefined ? undefined : oRss <= 200);
  const down = v('outage', 'down_requests');
  const downBound = v('outage', 'down_requests_bound');
  add('outage.down_requests', 'outage', down, ' req', `probes only (<= ${downBound ?? '?'})`, down === undefined || downBound === undefined ? undefined : down <= downBound);
  const drain = v('outage', 'drain_eps');
  add('outage.drain_eps', 'outage', drain, ' ev/s', '>= 0.8 x backlog_eps', drain === undefined || bl === undefined ? undefined : drain >= 0.8 * bl);
  const bfr = v('backfill', 'backfill_rows_per_s');
  add('backfill_rows_per_s', 'backfill', bfr, ' rows/s', '>= 20000', bfr === undefined ? undefined : bfr >= 20000);
  const bft = v('backfill', 'billing_tps_ratio');
  add('backfill billing_tps_ratio', 'backfill', bft, '', '>= 0.7', bft === undefined ? undefined : bft >= 0.7);
  add('shards.e2e_eps_1_shard', 'shards', v('shards', 'e2e_eps_1_shard'), ' ev/s', '-', undefined);
  add('shards.e2e_eps_2_shards', 'shards', v('shards', 'e2e_eps_2_shards'), ' ev/s', '- (one machine: no goal)', undefined);
  add('shards.decode_cpu_ms_per_1k (1 slot)', 'shards', v('shards', 'decode_cpu_ms_per_1k_events_1_slot'), ' ms', '-', undefined);
  add('shards.decode_cpu_ms_per_1k (per slot, 2)', 'shards', v('shards', 'decode_cpu_ms_per_1k_events_per_slot_2_slots'), ' ms', '-', undefined);
  const cms = v('console', 'console_ms');
  add('console_ms', 'console', cms, ' ms', '<= 100 (p95, overview, subscriber and failures pages)', cms === undefined ? undefined : cms <= 100);
  return { rows, goals };
}

function printTable(rows: Row[]): void {
  const head: Row = { figure: 'figure', measured: 'measured', goal: 'goal', met: 'met?' };
  const all = [head, ...rows];
  const w = (k: keyof Row) => Math.max(...all.map((r) => r[k].length));
  const line = (r: Row) => `${r.figure.padEnd(w('figure'))}  ${r.measured.padStart(w('measured'))}  ${r.goal.padEnd(w('goal'))}  ${r.met}`;
  process.stdout.write(`${line(head)}\n${'-'.repeat(line(head).length)}\n${rows.map(line).join('\n')}\n`);
}

function figuresJson(out: Record<string, FigureOutcome>): Record<string, unknown> {
  const fig: Record<string, unknown> = {};
  const put = (key: string, name: string, pick: (v: Record<string, number>) => unknown) => {
    const o = out[name];
    if (!o) return;
    fig[key] = o.status === 'ok' ? pick(o.values) : { status: o.status, reason: o.reason };
  };
  put('http_ceiling_rps', 'http_ceiling', (v) => v.http_ceiling_rps);
  put('http_ceiling_cpu_us', 'http_ceiling', (v) => ({ client: v.cpu_us_client, receiver: v.cpu_us_receiver }));
  put('capture_overhead_ratio', 'capture_overhead', (v) => v.capture_overhead_ratio);
  put('e2e_eps', 'e2e', (v) => v.e2e_eps);
  put('e2e_cpu_us', 'e2e', (v) => ({ espf: v.cpu_us_espf, postgres: v.cpu_us_postgres, receiver: v.cpu_us_receiver }));
  put('e2e_shaped', 'e2e_shaped', (v) => ({ e2e_eps: v.e2e_eps, cpu_us_espf: v.cpu_us_espf, cpu_us_postgres: v.cpu_us_postgres,
    cpu_us_espf_per_e2e: v.cpu_us_espf_per_e2e }));
  put('latency_ms', 'latency', (v) => ({ p50: v.p50, p95: v.p95, p99: v.p99 }));
  put('fanout_s', 'fanout', (v) => v.fanout_s);
  put('fanout_peak_rss_mb', 'fanout', (v) => v.fanout_peak_rss_mb);
  put('bigtx_eps', 'bigtx', (v) => v.bigtx_eps);
  put('bigtx_peak_rss_mb', 'bigtx', (v) => v.bigtx_peak_rss_mb);
  put('rate_accuracy', 'rate_accuracy', (v) => ({ mean_rate: v.mean_rate, max_window: v.max_window, mean_error_pct: v.mean_error_pct }));
  put('backlog_eps', 'backlog', (v) => v.backlog_eps);
  put('peak_rss_mb', 'backlog', (v) => v.peak_rss_mb);
  put('console_ms', 'console', (v) => ({ p95: v.console_ms, overview_p95: v.overview_p95, subscriber_p95: v.subscriber_p95, failures_p95: v.failures_p95,
    overview_p50: v.overview_p50, subscriber_p50: v.subscriber_p50, failures_p50: v.failures_p50 }));
  put('outage', 'outage', (v) => ({ peak_rss_mb: v.peak_rss_outage_mb, down_requests: v.down_requests, down_requests_bound: v.down_requests_bound, drain_eps: v.drain_eps }));
  put('backfill_rows_per_s', 'backfill', (v) => ({ rows_per_s: v.backfill_rows_per_s, billing_tps_ratio: v.billing_tps_ratio }));
  put('shards', 'shards', (v) => ({
    e2e_eps_1_shard: v.e2e_eps_1_shard, e2e_eps_2_shards: v.e2e_eps_2_shards,
    decode_cpu_ms_per_1k_events_1_slot: v.decode_cpu_ms_per_1k_events_1_slot,
    decode_cpu_ms_per_1k_events_per_slot_2_slots: v.decode_cpu_ms_per_1k_events_per_slot_2_slots,
  }));
  return fig;
}

/**
 * The code measured: commit, and the files of the product that differ from it (espf run runs the
 * working tree). With BENCH_ESPF_BIN, espf run runs that entry point's tree: its commit and changes
 * too (the migrations and the bench are this tree's).
 */
function codeVersion(): Record<string, unknown> {
  const at = (dir: string) => {
    const git = (...args: string[]) => spawnSync('git', ['-C', dir, ...args], { encoding: 'utf8' });
    const head = git('rev-parse', 'HEAD');
    const dirty = git('status', '--porcelain', '--', 'src', 'sql', 'migrations', 'bin', 'package.json');
    return {
      commit: head.status === 0 ? head.stdout.trim() : null,
      uncommitted_changes: dirty.status === 0 ? dirty.stdout.split('\n').filter(Boolean).map((l) => l.trim()) : null,
    };
  };
  const bin = process.env.BENCH_ESPF_BIN;
  return { ...at(ROOT), ...(bin ? { espf_bin: bin, espf_bin_code: at(path.dirname(path.dirname(path.resolve(bin)))) } : {}) };
}

async function main(): Promise<void> {
  const started = Date.now();
  const loadAtStart = os.loadavg();
  // The big customer's accounts serve fanout (its block) and bigtx (one UPDATE of them all), each in its own clone.
  const sizes = quick ? { fanoutAccounts: 20_000, accounts: 10_000 } : { fanoutAccounts: 1_000_000, accounts: 100_000 };
  if (fanoutAccounts !== undefined) {
    if (!Number.isInteger(fanoutAccounts) || fanoutAccounts < 1) throw new Error(`BENCH_FANOUT_ACCOUNTS: a positive integer, not '${process.env.BENCH_FANOUT_ACCOUNTS}'`);
    sizes.fanoutAccounts = fanoutAccounts;
  }
  let server: Server | undefined;
  let receiver: Receiver | undefined;
  const template = `espf_bench_tpl_${process.pid}`;
  const cleanup = async () => {
    await receiver?.stop().catch(() => undefined);
    if (server) {
      await dropDatabase(server.adminUrl, template).catch(() => undefined);
      await server.stop().catch(() => undefined);
    }
  };
  let interrupted = false;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      if (interrupted) return;
      interrupted = true;
      log(`${sig}: cleaning up`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  try {
    log(`starting PostgreSQL (${process.env.DATABASE_URL ? 'DATABASE_URL' : 'throwaway durable cluster'})`);
    server = await startServer();
    log(`seeding template ${template}: ${sizes.fanoutAccounts} fan-out accounts, ${sizes.accounts} accounts`);
    const seed = await createTemplate(server.adminUrl, template, sizes);
    receiver = await Receiver.start();
    log(`receiver on port ${receiver.port}`);
    const facts = await serverFacts(withDatabase(server.adminUrl, template));
    const ctx: BenchContext = {
      quick, server, seed, receiver,
      deadline: Number.POSITIVE_INFINITY,
      name: (figure, run) => `bench_${figure}_${run}_${process.pid}`,
    };
    const outcomes: Record<string, FigureOutcome> = {};
    const parameters: Record<string, unknown> = { runs, quick, budget_scale: budgetScale, seed: sizes };
    const selected = FIGURES.filter((f) => !only || only.has(f.name));
    const budgetOf = (f: Figure<any>) => (quick ? f.budgetS.quick : f.budgetS.full) * budgetScale;
    for (const f of selected) {
      if (outcomes[f.name]) continue; // measured in turns with another
      const params = f.params(ctx);
      parameters[f.name] = { ...params, budget_s: budgetOf(f) };
      const t = Date.now();
      const turns = IN_TURNS.find(([a]) => a === f.name);
      const partner = turns && selected.find((g) => g.name === turns[1]);
      if (turns && partner) {
        const pb = partner.params(ctx);
        parameters[partner.name] = { ...pb, budget_s: budgetOf(partner), in_turns_with: f.name };
        [outcomes[f.name], outcomes[partner.name]] = await measureInTurns({ ...ctx, deadline: t + (budgetOf(f) + budgetOf(partner)) * 1000 },
          f, partner, params, pb, turns[2], turns[3]);
        log(`${f.name}, ${partner.name} in turns: ${round((Date.now() - t) / 1000, 1)} s`);
        continue;
      }
      outcomes[f.name] = await measure({ ...ctx, deadline: t + budgetOf(f) * 1000 }, f, params);
      log(`${f.name}: ${round((Date.now() - t) / 1000, 1)} s`);
    }
    const { rows, goals } = goalRows(outcomes);
    const cpus = os.cpus();
    const result = {
      generated_at: new Date().toISOString(),
      duration_s: round((Date.now() - started) / 1000, 1),
      code: codeVersion(),
      machine: {
        cores: cpus.length,
        cpu_model: cpus[0]?.model ?? 'unknown',
        memory_mb: Math.round(os.totalmem() / 2 ** 20),
        os: `${os.type()} ${os.release()} ${os.arch()}`,
        node: process.version,
        postgresql: facts.server_version ?? server.cluster?.version ?? 'unknown',
        postgresql_server: server.kind,
        postgresql_settings: facts,
        // Other work on the machine skews every figure: the 1-minute load average before and after.
        load_avg_1m: { start: round(loadAtStart[0]!, 2), end: round(os.loadavg()[0]!, 2) },
      },
      parameters,
      figures: figuresJson(outcomes),
      goals,
      runs: Object.fromEntries(Object.entries(outcomes).map(([k, o]) => [k, {
        status: o.status, runs: o.runs, errors: o.errors,
        ...(o.status === 'ok' ? { median: o.values, skipped_runs: o.skippedRuns } : { reason: o.reason }),
      }])),
    };
    await mkdir(path.dirname(outFile), { recursive: true });
    await writeFile(outFile, `${JSON.stringify(result, null, 2)}\n`);
    log(`wrote ${path.relative(process.cwd(), outFile)} (${result.duration_s} s)`);
    printTable(rows);
  } finally {
    await cleanup();
  }
}

main().then(() => process.exit(0), (err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
