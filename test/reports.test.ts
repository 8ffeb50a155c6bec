import assert from 'node:assert/strict';
import { sql } from '@databases/pg';
import { espf } from './support/cli.ts';
import type { TestDatabase } from './support/database.ts';
import { deliveryFixture } from './support/fixture.ts';
import { eventually } from './support/receiver.ts';

describe('reports (sql/500_reports.sql) and espf status', function () {
  const f = deliveryFixture({
    types: ['Account/New', 'Account/Blocked'],
    settings: { max_attempts: 2, retry_max_delay: 60 },
    prepare: async ({ rx }) => {
      rx.respond = (r) => {
        const id = String(r.json.variables.id);
        if (id.startsWith('bad-')) return { status: 502, body: 'upstream down' };
        // Busy for a minute (Retry-After, capped at retry_max_delay): the account waits in RETRY.
        if (id.startsWith('late-')) return { status: 503, headers: { 'retry-after': '600' }, body: 'busy' };
        return { status: 200 };
      };
    },
  });
  let t: TestDatabase;
  let ids: { i_product: number; i_customer: number };
  const accounts = new Map<string, number>();

  before(async () => {
    ({ t, ids } = f);
    for (const id of ['ok-1', 'ok-2', 'ok-3', 'bad-1']) {
      const [a] = await t.db.query(sql`INSERT INTO billing.account (id, i_customer, i_product) VALUES (${id}, ${ids.i_customer}, ${ids.i_product}) RETURNING i_account`);
      accounts.set(id, a.i_account);
    }
    await eventually(async () => {
      const [r] = await t.db.query(sql`SELECT count(*) AS n FROM espf.event_deliveries WHERE state IN ('DELIVERED', 'FAILED')`);
      return r.n === 4;
    }, 15_000, 'four finished deliveries');
    await eventually(async () => {
      const [r] = await t.db.query(sql`SELECT count(*) AS n FROM espf.account_provisioning_statuses`);
      return r.n === 4;
    }, 15_000, 'four account statuses');
  });

  it('report_account_status: the current status per account and handler, with the account id', async () => {
    const rows = await t.db.query(sql`SELECT i_account, account_id, handler, status, event_type, attempts FROM espf.report_account_status ORDER BY account_id`);
    assert.deepEqual(rows, [
      { i_account: accounts.get('bad-1'), account_id: 'bad-1', handler: 'EventSender', status: 'FAILED', event_type: 'Account/New', attempts: 2 },
      { i_account: accounts.get('ok-1'), account_id: 'ok-1', handler: 'EventSender', status: 'OK', event_type: 'Account/New', attempts: 1 },
      { i_account: accounts.get('ok-2'), account_id: 'ok-2', handler: 'EventSender', status: 'OK', event_type: 'Account/New', attempts: 1 },
      { i_account: accounts.get('ok-3'), account_id: 'ok-3', handler: 'EventSender', status: 'OK', event_type: 'Account/New', attempts: 1 },
    ]);
  });

  it('report_failures_24h: failures of the last 24 hours by type and handler, older ones left out', async () => {
    // A failure of two days ago (as a retention window would still hold it).
    await t.db.query(sql`
      INSERT INTO espf.event_deliveries (i_event, handler, state, event_type, order_key, i_account, instance, attempts, last_error, finished_at)
      VALUES (999001, 'EventSender', 'FAILED', 'Account/New', 'a:1', 1, 'main', 5, 'old', now() - interval '2 days')`);
    const rows = await t.db.query(sql`SELECT event_type, handler, failures, accounts, last_http_status, last_error FROM espf.report_failures_24h`);
    assert.equal(rows.length, 1);
    assert.equal(rows[0].event_type, 'Account/New');
    assert.equal(rows[0].handler, 'EventSender');
    assert.equal(rows[0].failures, 1);
    assert.equal(rows[0].accounts, 1);
    assert.equal(rows[0].last_http_status, 502);
    assert.match(rows[0].last_error, /HTTP 502/);
  });

  it('report_latency_hourly: percentiles of commit -> 2xx per handler and hour', async () => {
    const rows = await t.db.query(sql`SELECT hour, handler, delivered, p50_s::float8 AS p50, p95_s::float8 AS p95, p99_s::float8 AS p99, max_s::float8 AS max FROM espf.report_latency_hourly`);
    assert.ok(rows.length >= 1 && rows.length <= 2, 'this hour (and the last, across an hour boundary)');
    assert.equal(rows.reduce((n: number, r: { delivered: number }) => n + r.delivered, 0), 3, 'the three delivered events, not the failed one');
    for (const r of rows) {
      assert.equal(r.handler, 'EventSender');
      assert.equal(r.hour.getUTCMinutes(), 0);
      assert.ok(r.p50 >= 0 && r.p50 <= r.p95 && r.p95 <= r.p99 && r.p99 <= r.max && r.max < 30, JSON.stringify(r));
    }
    const [check] = await t.db.query(sql`
      SELECT max(extract(epoch FROM finished_at - committed_at))::numeric(12,3)::float8 AS max
        FROM espf.event_deliveries WHERE state = 'DELIVERED'`);
    assert.equal(Math.max(...rows.map((r: { max: number }) => r.max)), check.max);
  });

  it('report_backlog: waiting events per http handler and the age of the oldest; zeros when none', async () => {
    const [idle] = await t.db.query(sql`SELECT handler, waiting, pending, retry, oldest_age FROM espf.report_backlog`);
    assert.deepEqual(idle, { handler: 'EventSender', waiting: 0, pending: 0, retry: 0, oldest_age: null });
    // The receiver is busy for this account: its first event waits in RETRY, the next one behind it in PENDING.
    const [a] = await t.db.query(sql`INSERT INTO billing.account (id, i_customer, i_product) VALUES ('late-1', ${ids.i_customer}, ${ids.i_product}) RETURNING i_account`);
    accounts.set('late-1', a.i_account);
    await eventually(async () => {
      const [r] = await t.db.query(sql`SELECT state FROM espf.event_deliveries WHERE i_account = ${a.i_account}`);
      return r?.state === 'RETRY';
    }, 10_000, 'the first event of late-1 in RETRY');
    await t.db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account = ${a.i_account}`);
    const r = await eventually(async () => {
      const [row] = await t.db.query(sql`SELECT * FROM espf.report_backlog WHERE handler = 'EventSender'`);
      return row.waiting === 2 && row;
    }, 10_000, 'two waiting deliveries in the backlog');
    assert.equal(r.pending, 1);
    assert.equal(r.retry, 1);
    assert.equal(r.enabled, true);
    const [first] = await t.db.query(sql`SELECT committed_at FROM espf.event_deliveries WHERE i_account = ${a.i_account} AND state = 'RETRY'`);
    assert.deepEqual(r.oldest_committed_at, first.committed_at);
    assert.ok(r.next_attempt_at.getTime() > Date.now() + 30_000, 'the next attempt honours Retry-After (up to retry_max_delay)');
    const [age] = await t.db.query(sql`SELECT extract(epoch FROM oldest_age)::float8 AS s FROM espf.report_backlog`);
    assert.ok(age.s > 0 && age.s < 60, `oldest age ${age.s} s`);
  });

  it('espf status --json: the reports for scripts', async () => {
    const r = await espf(['status', '--json'], { DATABASE_URL: t.url });
    assert.equal(r.code, 0, r.stderr);
    const s = JSON.parse(r.stdout);
    assert.deepEqual(s.backlog.map((b: Record<string, unknown>) => [b.handler, b.waiting, b.pending, b.retry]), [['EventSender', 2, 1, 1]]);
    assert.deepEqual(s.failures_24h.map((f: { event_type: string; failures: number }) => [f.event_type, f.failures]), [['Account/New', 1]]);
    assert.equal(s.latency_hourly.reduce((n: number, l: { delivered: number }) => n + l.delivered, 0), 3);
    assert.deepEqual(s.account_status.by_handler.map((h: Record<string, unknown>) => [h.handler, h.accounts, h.ok, h.retry, h.failed]), [['EventSender', 5, 3, 1, 1]]);
    assert.deepEqual(s.account_status.not_ok.map((a: Record<string, unknown>) => [a.account_id, a.status]), [['late-1', 'RETRY'], ['bad-1', 'FAILED']]);
  });

  it('espf status: tables a person reads; bad options are usage errors', async () => {
    const r = await espf(['status'], { DATABASE_URL: t.url });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^Backlog per http handler \(espf\.report_backlog\)\nhandler +enabled +instance +waiting/m);
    assert.match(r.stdout, /^EventSender +true +main +2 +1 +1 +\d+ +\S+Z$/m);
    assert.match(r.stdout, /^Account\/New +EventSender +1 +1 +\S+ +502 +HTTP 502/m);
    assert.match(r.stdout, /^\d+ +bad-1 +EventSender +FAILED +Account\/New +2 +HTTP 502: upstream down/m);
    assert.match(r.stdout, /^EventSender +5 +3 +0 +1 +1 /m);
    const bad = await espf(['status', '--hours', '0'], { DATABASE_URL: t.url });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--hours '0': use a whole number from 1 to 720/);
  });
});
