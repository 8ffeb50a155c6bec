/**
 * http_ceiling_rps: what a bare undici client reaches against the same receiver
 * process espf sends to, with a body of the same size as an espf event: a Pool of
 * keep-alive connections, one request in flight per connection, for a few seconds.
 *
 * cpu_us_client: the CPU time of this bare client per request (user + system of
 * the bench process over the measured seconds, which does nothing else then), the
 * reference for espf's CPU per event (bench/run.ts: espf ÷ bare client); and
 * cpu_us_receiver, the receiver's per request.
 */
import { Pool } from 'undici';
import { cpuSeconds } from './lib/cpu.ts';
import type { BenchContext, Figure, RunResult } from './lib/figure.ts';
import { round, sleep } from './lib/util.ts';

export interface HttpCeilingParams extends Record<string, unknown> {
  readonly connections: number;
  readonly seconds: number;
  readonly warmupSeconds: number;
  readonly bodyBytes: number;
}

/** An espf request body (README, "Writing a receiver") for event `i`. */
export function eventBody(i: number): string {
  return JSON.stringify({
    event_type: 'Account/Blocked',
    variables: { i_event: i, i_env: 1, i_account: 100_000 + (i % 100_000), event_time: '2026-11-25 21:40:07' },
  });
}

export const httpCeiling: Figure<HttpCeilingParams> = {
  name: 'http_ceiling',
  budgetS: { full: 25, quick: 5 },
  params: (ctx) => ({
    connections: Number(process.env.BENCH_HTTP_CONNECTIONS ?? 10),
    seconds: ctx.quick ? 2 : 5,
    warmupSeconds: 1,
    bodyBytes: Buffer.byteLength(eventBody(1_000_000)),
  }),
  async run(ctx: BenchContext, p: HttpCeilingParams): Promise<RunResult> {
    const rx = ctx.receiver;
    const pool = new Pool(`http://127.0.0.1:${rx.port}`, { connections: p.connections, pipelining: 1, keepAliveTimeout: 30_000 });
    let next = 1_000_000;
    let ok = 0;
    let failed = 0;
    let measuring = false;
    let stop = false;
    const worker = async () => {
      while (!stop) {
        try {
          const r = await pool.request({
            path: '/', method: 'POST',
            headers: { 'content-type': 'application/json', date: new Date().toUTCString() },
            body: eventBody(next++),
          });
          await r.body.dump();
          if (measuring) { if (r.statusCode >= 200 && r.statusCode < 300) ok++; else failed++; }
        } catch {
          if (measuring) failed++;
        }
      }
    };
    await rx.reset();
    const workers = Array.from({ length: p.connections }, worker);
    await sleep(p.warmupSeconds * 1000);
    const rx0 = cpuSeconds(rx.child.pid!);
    const cpu0 = process.cpuUsage();
    measuring = true;
    const t0 = performance.now();
    await sleep(p.seconds * 1000);
    measuring = false;
    const elapsed = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const rx1 = cpuSeconds(rx.child.pid!);
    stop = true;
    await Promise.all(workers);
    await pool.close();
    const stats = await rx.stats();
    await rx.reset();
    return {
      values: {
        http_ceiling_rps: round(ok / elapsed, 0),
        cpu_us_client: round((cpu.user + cpu.system) / Math.max(1, ok + failed), 1),
        ...(rx0 !== null && rx1 !== null ? { cpu_us_receiver: round(((rx1 - rx0) * 1e6) / Math.max(1, ok + failed), 1) } : {}),
      },
      details: { ok, failed, elapsed_s: round(elapsed, 3), receiver_requests: stats.requests, receiver_bad_bodies: stats.badBodies },
    };
  },
};
