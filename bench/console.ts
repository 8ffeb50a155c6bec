/**
 * console_ms: server time of three console pages with BENCH_CONSOLE_ROWS (default
 * 10,000,000; quick 200,000) rows in espf.event_deliveries (and as many events):
 * the overview (its counts from espf.delivery_minutes, sql/420_delivery_minutes.sql),
 * the subscriber page of a random account (about 100 deliveries each) and the
 * failures page (state=FAILED&handler=EventSender, also filtered by type, by a
 * one-day window, and a page deep in the keyset). Server time = from the request
 * reaching the console to the end of its answer, in this process over loopback;
 * 200 requests of each page after 20 of warm-up, one at a time; p50/p95.
 * The data are generated once per `make bench` (bench/console-data.sql) and kept
 * for the later runs; the database is dropped with the throwaway cluster.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import pino from 'pino';
import { sql } from '@databases/pg';
import { hashPassword } from '../src/console/auth.ts';
import { createConsole } from '../src/console/server.ts';
import { connect, type Db } from '../src/db/connect.ts';
import { cloneDatabase } from './lib/db.ts';
import type { BenchContext, Figure, RunResult } from './lib/figure.ts';
import { BENCH_DIR } from './lib/paths.ts';
import { log, percentile, round } from './lib/util.ts';

export interface ConsoleParams extends Record<string, unknown> {
  readonly rows: number;
  readonly requests: number;
  readonly warmup: number;
}

let prepared: Promise<{ url: string; seconds: number }> | undefined;

async function prepare(ctx: BenchContext, rows: number): Promise<{ url: string; seconds: number }> {
  const url = await cloneDatabase(ctx.server.adminUrl, ctx.seed.template, `bench_console_${process.pid}`);
  const db = connect({ connectionString: url, poolSize: 1, applicationName: 'espf-bench' });
  const t0 = Date.now();
  try {
    const text = readFileSync(path.join(BENCH_DIR, 'console-data.sql'), 'utf8');
    const batch = 1_000_000;
    await db.task(async (c) => {
      for (const [k, v] of Object.entries({ acc_lo: ctx.seed.accounts[0], acc_hi: ctx.seed.accounts[1], total: rows })) {
        await c.query(sql`SELECT set_config(${`espf_bench.${k}`}, ${String(v)}, false)`);
      }
      for (let lo = 1; lo <= rows; lo += batch) {
        const hi = Math.min(rows, lo + batch - 1);
        await c.query(sql`SELECT set_config('espf_bench.lo', ${String(lo)}, false), set_config('espf_bench.hi', ${String(hi)}, false)`);
        await c.query(sql.__dangerous__rawValue(text));
        log(`console: ${hi.toLocaleString('en')} of ${rows.toLocaleString('en')} deliveries (${round((Date.now() - t0) / 1000, 0)} s)`);
      }
      await c.query(sql`SELECT setval('espf.events_i_event_seq', ${rows})`);
      await c.query(sql`VACUUM (ANALYZE) espf.events, espf.event_deliveries`);
    });
  } finally {
    await db.dispose();
  }
  return { url, seconds: (Date.now() - t0) / 1000 };
}

/** A console on its own HTTP server, timing each answer (request → last byte written). */
async function serve(db: Db): Promise<{ base: string; times: Map<string, number[]>; close(): Promise<void> }> {
  const web = createConsole({ db, log: pino({ level: 'silent' }), logDir: '/nonexistent' });
  const times = new Map<string, number[]>();
  const server = http.createServer((req, res) => {
    const t = performance.now();
    const kind = String(req.headers['x-bench-page'] ?? 'other');
    res.once('finish', () => {
      let list = times.get(kind);
      if (!list) times.set(kind, list = []);
      list.push(performance.now() - t);
    });
    const p = (req.url ?? '/').split('?')[0]!;
    if (!web.handle(req, res, p)) { res.writeHead(404); res.end(); }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return { base: `http://127.0.0.1:${port}`, times, close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }) };
}

export const consolePages: Figure<ConsoleParams> = {
  name: 'console',
  budgetS: { full: 1500, quick: 60 },
  params: (ctx) => ({
    rows: Number(process.env.BENCH_CONSOLE_ROWS ?? (ctx.quick ? 200_000 : 10_000_000)),
    requests: ctx.quick ? 50 : 200,
    warmup: 20,
  }),
  async run(ctx: BenchContext, p: ConsoleParams): Promise<RunResult> {
    prepared ??= prepare(ctx, p.rows);
    const data = await prepared;
    const db = connect({ connectionString: data.url, poolSize: 4, applicationName: 'espf-bench console' });
    const srv = await serve(db);
    try {
      await db.query(sql`INSERT INTO espf.console_users (name, role, password_hash) VALUES ('bench', 'viewer', ${await hashPassword('bench password')}) ON CONFLICT DO NOTHING`);
      await db.query(sql`UPDATE espf.console SET enabled = true`);
      // As a browser logs in: the login form's token and its cookie first, then the form from this Origin.
      const form = await fetch(`${srv.base}/console/login`);
      const token = /name="_login" value="([^"]*)"/.exec(await form.text())?.[1] ?? '';
      const login = await fetch(`${srv.base}/console/login`, {
        method: 'POST', redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: (form.headers.get('set-cookie') ?? '').split(';')[0]!, origin: srv.base },
        body: new URLSearchParams({ _login: token, user: 'bench', password: 'bench password' }).toString(),
      });
      const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0]!;
      if (login.status !== 303 || !cookie) throw new Error(`console_ms: login failed (${login.status})`);
      const [mid] = await db.query(sql`SELECT i_event FROM espf.event_deliveries WHERE state = 'FAILED' ORDER BY i_event LIMIT 1 OFFSET ${Math.floor(p.rows / 200)}`);
      const failures = [
        '/console/deliveries?handler=EventSender&state=FAILED',
        '/console/deliveries?handler=EventSender&type=Account%2FBlocked&state=FAILED',
        `/console/deliveries?handler=EventSender&state=FAILED&since=${encodeURIComponent(new Date(Date.now() - 2 * 86_400_000).toISOString().slice(0, 16))}&until=${encodeURIComponent(new Date(Date.now() - 86_400_000).toISOString().slice(0, 16))}`,
        `/console/deliveries?handler=EventSender&state=FAILED&after=${mid.i_event}%7CEventSender`,
      ];
      const [lo, hi] = ctx.seed.accounts;
      let x = 12345;
      const account = () => { x = (x * 1103515245 + 12345) % 2 ** 31; return lo + (x % (hi - lo + 1)); };
      const get = async (page: string, url: string) => {
        const r = await fetch(`${srv.base}${url}`, { headers: { cookie, 'x-bench-page': page } });
        const body = await r.text();
        if (r.status !== 200) throw new Error(`console_ms: ${url}: ${r.status} ${body.slice(0, 200)}`);
        return body;
      };
      // Check what is measured: the pages hold rows.
      if (!/data-delivery=/.test(await get('check', `/console/subscribers/${account()}`))) throw new Error('console_ms: a subscriber page without deliveries');
      if (!/state FAILED/.test(await get('check', failures[0]!))) throw new Error('console_ms: a failures page without failures');
      if (!/EventSender delivered, last 6 hours: [1-9]/.test(await get('check', '/console/'))) throw new Error('console_ms: an overview without deliveries');
      for (let i = 0; i < p.warmup; i++) {
        await get('warmup', '/console/');
        await get('warmup', `/console/subscribers/${account()}`);
        await get('warmup', failures[i % failures.length]!);
      }
      for (let i = 0; i < p.requests; i++) {
        await get('overview', '/console/');
        await get('subscriber', `/console/subscribers/${account()}`);
        await get(`failures ${i % failures.length}`, failures[i % failures.length]!);
      }
      srv.times.set('failures', failures.flatMap((_f, k) => srv.times.get(`failures ${k}`) ?? []));
      const stat = (k: string) => {
        const s = Float64Array.from(srv.times.get(k) ?? []).sort();
        return { p50: round(percentile(s, 50), 1), p95: round(percentile(s, 95), 1), max: round(s[s.length - 1] ?? NaN, 1), n: s.length };
      };
      const over = stat('overview');
      const sub = stat('subscriber');
      const fail = stat('failures');
      const [{ n }] = await db.query(sql`SELECT count(*)::bigint AS n FROM espf.event_deliveries`);
      return {
        values: { console_ms: Math.max(over.p95, sub.p95, fail.p95), overview_p95: over.p95, subscriber_p95: sub.p95, failures_p95: fail.p95,
          overview_p50: over.p50, subscriber_p50: sub.p50, failures_p50: fail.p50 },
        details: { rows: Number(n), generate_s: round(data.seconds, 0), overview: over, subscriber: sub, failures: fail,
          failures_by_url: failures.map((url, k) => ({ url, ...stat(`failures ${k}`) })) },
      };
    } finally {
      await srv.close();
      await db.dispose();
    }
  },
};
