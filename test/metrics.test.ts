import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from '@databases/pg';
import { provisioningLog } from '../src/log/logger.ts';
import { ROOT } from '../src/paths.ts';
import { Metrics } from '../src/metrics/metrics.ts';
import { startHttpServer } from '../src/run/http-server.ts';
import { Sender } from '../src/run/sender.ts';
import { deliveryFixture } from './support/fixture.ts';
import { eventually } from './support/receiver.ts';
import { seedCustomer } from './support/sender.ts';

/** One sample of the text exposition: the value of `name` whose labels include `labels`, summed over the rest. */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  let found: number | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = new Map<string, string>();
    for (const lm of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) have.set(lm[1]!, lm[2]!);
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) found = (found ?? 0) + Number(m[3]);
  }
  return found;
}

describe('metrics: counters, gauges and the /metrics and /healthz endpoints', function () {
  let server: Awaited<ReturnType<typeof startHttpServer>>;
  const failing = new Set<string>();   // account ids the receiver answers 500
  const slow = new Set<string>();      // account ids the receiver answers after 1.5 s
  const f = deliveryFixture({
    types: ['Account/New', 'Account/Blocked'],
    settings: { max_attempts: 2 },
    metrics: ({ t }) => new Metrics({ db: t.db, slotLagCacheMs: 0 }),
    prepare: async ({ rx }) => {
      rx.respond = (r) => {
        const id = String(r.json.variables.id);
        if (failing.has(id)) return { status: 500, body: '{"error":"boom"}' };
        if (slow.has(id)) return { status: 200, delayMs: 1500 };
        return { status: 200 };
      };
    },
  });
  before(async () => {
    server = await startHttpServer({ sender: f.run.sender, db: f.t.db, log: f.run.log, metrics: f.metrics!, port: 0, host: '127.0.0.1' });
  });
  after(async () => {
    await server?.close();
  });

  async function scrape(): Promise<string> {
    const res = await fetch(`http://127.0.0.1:${server.port}/metrics`);
    assert.equal(res.status, 200);
    return res.text();
  }

  async function newAccount(id: string): Promise<number> {
    const [a] = await f.t.db.query(sql`INSERT INTO billing.account (id, i_customer, i_product) VALUES (${id}, ${f.ids.i_customer}, ${f.ids.i_product}) RETURNING i_account`);
    return a.i_account;
  }

  it('serves the Prometheus text format at /metrics, every series named espf_…', async () => {
    const res = await fetch(`http://127.0.0.1:${server.port}/metrics`);
    assert.equal(res.status, 200);
    assert.match(String(res.headers.get('content-type')), /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const names = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => m[1]!);
    assert.ok(names.length > 10, `series: ${names.join(', ')}`);
    for (const n of names) assert.match(n, /^espf_[a-z0-9_]+$/);
    for (const n of ['espf_events_captured_total', 'espf_events_dispatched_total', 'espf_deliveries_total', 'espf_attempts_total',
      'espf_delivery_latency_seconds', 'espf_queue_depth', 'espf_oldest_waiting_seconds', 'espf_replication_slot_lag_bytes',
      'espf_token_bucket_wait_seconds_total', 'espf_streaming']) {
      assert.ok(names.includes(n), `${n} is exposed`);
    }
    // Counters end in _total; the histogram has its buckets.
    for (const m of text.matchAll(/^# TYPE (\S+) counter$/gm)) assert.match(m[1]!, /_total$/);
    assert.equal(sample(text, 'espf_streaming'), 1);
  });

  it('docs/grafana-dashboard.json and docs/operations.md use only series that /metrics exposes', async () => {
    const text = await scrape();
    const exposed = new Set<string>();
    for (const [, name, type] of text.matchAll(/^# TYPE (espf_[a-z0-9_]+) (\w+)$/gm)) {
      exposed.add(name!);
      if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) exposed.add(`${name}${s}`);
    }
    const dashboard = readFileSync(path.join(ROOT, 'docs/grafana-dashboard.json'), 'utf8');
    JSON.parse(dashboard);
    const used = new Set([...dashboard.matchAll(/\b(espf_[a-z0-9_]+)/g)].map((m) => m[1]!));
    assert.ok(used.size >= 10, `the dashboard uses ${used.size} series`);
    for (const name of used) assert.ok(exposed.has(name), `dashboard series ${name} is exposed`);
    const doc = readFileSync(path.join(ROOT, 'docs/operations.md'), 'utf8');
    for (const m of doc.matchAll(/^\| `(espf_[a-z0-9_]+)` \|/gm)) {
      const name = m[1]!;
      assert.ok([...exposed].some((e) => e === name || e.startsWith(`${name}_`)), `documented series ${name} is exposed`);
    }
  });

  it('counts captured events, delivered deliveries, successful attempts and their latency', async () => {
    const before = await scrape();
    const base = {
      captured: sample(before, 'espf_events_captured_total', { event_type: 'Account/New' }) ?? 0,
      delivered: sample(before, 'espf_deliveries_total', { handler: 'EventSender', event_type: 'Account/New', outcome: 'delivered' }) ?? 0,
      success: sample(before, 'espf_attempts_total', { handler: 'EventSender', outcome: 'success' }) ?? 0,
      latency: sample(before, 'espf_delivery_latency_seconds_count', { handler: 'EventSender' }) ?? 0,
    };
    for (const id of ['m-1', 'm-2', 'm-3']) await newAccount(id);
    await f.rx.waitFor(() => ['m-1', 'm-2', 'm-3'].every((id) => f.rx.received.some((r) => r.json.variables.id === id)), 10_000, 'three accounts');
    const text = await eventually(async () => {
      const s = await scrape();
      return (sample(s, 'espf_deliveries_total', { handler: 'EventSender', event_type: 'Account/New', outcome: 'delivered' }) ?? 0) >= base.delivered + 3 && s;
    }, 10_000, 'three delivered deliveries in the metrics');
    assert.equal(sample(text, 'espf_events_captured_total', { event_type: 'Account/New' }), base.captured + 3);
    assert.equal(sample(text, 'espf_deliveries_total', { handler: 'EventSender', event_type: 'Account/New', outcome: 'delivered' }), base.delivered + 3);
    assert.equal(sample(text, 'espf_attempts_total', { handler: 'EventSender', outcome: 'success' }), base.success + 3);
    assert.equal(sample(text, 'espf_delivery_latency_seconds_count', { handler: 'EventSender' }), base.latency + 3);
    const sum = sample(text, 'espf_delivery_latency_seconds_sum', { handler: 'EventSender' })!;
    assert.ok(sum > 0 && sum < 30, `latency sum ${sum} s`);
    assert.equal(sample(text, 'espf_delivery_latency_seconds_bucket', { handler: 'EventSender', le: '+Inf' }), base.latency + 3);
  });

  it('counts failed attempts by outcome, retries and deliveries that failed for good', async () => {
    failing.add('m-fail');
    const before = await scrape();
    const httpErrors = sample(before, 'espf_attempts_total', { handler: 'EventSender', outcome: 'http_error' }) ?? 0;
    await newAccount('m-fail');
    const text = await eventually(async () => {
      const s = await scrape();
      return (sample(s, 'espf_deliveries_total', { handler: 'EventSender', event_type: 'Account/New', outcome: 'failed' }) ?? 0) >= 1 && s;
    }, 10_000, 'a failed delivery in the metrics');
    // max_attempts = 2: one retry, then failed.
    assert.equal(sample(text, 'espf_attempts_total', { handler: 'EventSender', outcome: 'http_error' }), httpErrors + 2);
    assert.equal(sample(text, 'espf_deliveries_total', { handler: 'EventSender', event_type: 'Account/New', outcome: 'retry' }), 1);
    assert.equal(sample(text, 'espf_deliveries_total', { handler: 'EventSender', event_type: 'Account/New', outcome: 'failed' }), 1);
  });

  it('shows the queue depth and the age of the oldest waiting event while a request is on the wire', async () => {
    slow.add('m-slow');
    const idle = await scrape();
    assert.equal(sample(idle, 'espf_queue_depth', { handler: 'EventSender' }) ?? 0, 0);
    await newAccount('m-slow');
    await eventually(async () => f.rx.inFlight === 1, 10_000, 'the slow request on the wire');
    const busy = await eventually(async () => {
      const s = await scrape();
      return (sample(s, 'espf_oldest_waiting_seconds', { handler: 'EventSender' }) ?? 0) > 0.2 && s;
    }, 10_000, 'an oldest waiting age');
    assert.equal(sample(busy, 'espf_queue_depth', { handler: 'EventSender' }), 1);
    assert.equal(sample(busy, 'espf_inflight_requests', { handler: 'EventSender' }), 1);
    await f.rx.waitFor(() => f.rx.received.some((r) => r.json.variables.id === 'm-slow'), 10_000, 'the slow answer');
    const after = await eventually(async () => {
      const s = await scrape();
      return sample(s, 'espf_queue_depth', { handler: 'EventSender' }) === 0 && s;
    }, 10_000, 'an empty queue');
    assert.equal(sample(after, 'espf_oldest_waiting_seconds', { handler: 'EventSender' }), 0);
  });

  it('reports the replication slot lag in bytes, as PostgreSQL sees it', async () => {
    const text = await scrape();
    const lag = sample(text, 'espf_replication_slot_lag_bytes', { slot: 'espf_main' });
    assert.ok(lag !== undefined && Number.isFinite(lag) && lag >= 0, `lag ${lag}`);
    // The same figure PostgreSQL gives, within what a heartbeat moves in between.
    const [row] = await f.t.db.query(sql`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::float8 AS lag FROM pg_replication_slots WHERE slot_name = 'espf_main'`);
    assert.ok(Math.abs(row.lag - lag!) < 1024 * 1024, `metric ${lag}, pg_replication_slots ${row.lag}`);
  });

  it('/healthz: 200 ready while streaming; 503 ready false for a sender that does not stream', async () => {
    const res = await fetch(`http://127.0.0.1:${server.port}/healthz`);
    assert.equal(res.status, 200);
    const body = await res.json() as Record<string, unknown>;
    assert.equal(body.alive, true);
    assert.equal(body.ready, true);

    const idle = new Sender({ db: f.t.db, url: f.t.url, instance: 'idle', log: f.run.log, plog: provisioningLog(mkdtempSync(path.join(os.tmpdir(), 'espf-log-'))) });
    const metrics = new Metrics({ db: f.t.db, processMetrics: false }).bind(idle);
    const other = await startHttpServer({ sender: idle, db: f.t.db, log: f.run.log, metrics, port: 0, host: '127.0.0.1' });
    try {
      const r2 = await fetch(`http://127.0.0.1:${other.port}/healthz`);
      assert.equal(r2.status, 503);
      assert.deepEqual(await r2.json(), { alive: true, ready: false, slot: 'espf_idle', waiting_on_instances: [] });
      const m = await (await fetch(`http://127.0.0.1:${other.port}/metrics`)).text();
      assert.equal(sample(m, 'espf_streaming'), 0);
      // No slot yet: no lag series for it.
      assert.equal(sample(m, 'espf_replication_slot_lag_bytes', { slot: 'espf_idle' }), undefined);
    } finally {
      await other.close();
    }
  });
});

describe('metrics: time spent waiting on the token bucket', function () {
  // 2 requests per second, a bucket of 2: the 3rd to 6th request wait about 0.5 s each.
  const f = deliveryFixture({
    types: ['Account/New'], settings: { token_rate: 2, token_burstiness: 2 }, seed: false,
    metrics: ({ t }) => new Metrics({ db: t.db, slotLagCacheMs: 0 }),
  });

  it('adds the waits of the bucket to espf_token_bucket_wait_seconds_total', async () => {
    const ids = await seedCustomer(f.t.db);
    await f.t.db.query(sql`
      INSERT INTO billing.account (id, i_customer, i_product)
      SELECT 'tb-' || g, ${ids.i_customer}, ${ids.i_product} FROM generate_series(1, 6) g`);
    await f.rx.waitFor(() => f.rx.received.length >= 6, 15_000, 'six requests');
    const text = await f.metrics!.text();
    const waited = sample(text, 'espf_token_bucket_wait_seconds_total', { handler: 'EventSender' })!;
    assert.ok(waited >= 1.0 && waited < 10, `waited ${waited} s`);
    const first = f.rx.received[0]!.at;
    const last = f.rx.received[5]!.at;
    assert.ok(last - first >= 1000, `six requests over ${last - first} ms at 2/s`);
  });
});
