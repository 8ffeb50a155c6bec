import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from '@databases/pg';
import { espf as runEspf, show, type EspfRun } from './support/cli.ts';
import type { TestDatabase } from './support/database.ts';
import { deliveryFixture } from './support/fixture.ts';
import { eventually, type TestReceiver } from './support/receiver.ts';

/**
 * `espf resend` as a child process against a running in-process sender: the
 * deliveries it re-queues are sent again (same i_event) within about a second.
 */

const home = mkdtempSync(path.join(os.tmpdir(), 'espf-home-'));

function espf(url: string, args: string[]): Promise<EspfRun> {
  return runEspf(args, { ESPF_HOME: home, DATABASE_URL: url });
}

describe('espf resend', function () {
  const f = deliveryFixture({
    types: ['Account/New'],
    settings: { max_attempts: 2 },
    prepare: async ({ rx }) => {
      // Accounts whose id starts with 'bad-' are refused: their events fail for good after 2 attempts.
      rx.respond = (r) => (String(r.json.variables.id ?? '').startsWith('bad-') && r.json.event_type === 'Account/New'
        ? { status: 500, body: 'HSS says no' } : { status: 200 });
    },
  });
  let t: TestDatabase;
  let rx: TestReceiver;
  let ids: { i_product: number; i_customer: number };
  const accounts: number[] = [];

  async function deliveries() {
    return t.db.query(sql`
      SELECT i_event, handler, state, attempts, urls_done, last_error, next_attempt_at, finished_at, instance, requeued, i_account
        FROM espf.event_deliveries WHERE handler = 'EventSender' ORDER BY i_event`);
  }
  async function everything() {
    return t.db.query(sql`SELECT * FROM espf.event_deliveries ORDER BY i_event, handler`);
  }

  before(async () => {
    ({ t, rx, ids } = f);
    for (const id of ['good-1', 'good-2', 'bad-1', 'bad-2']) {
      const [a] = await t.db.query(sql`INSERT INTO billing.account (id, i_customer, i_product) VALUES (${id}, ${ids.i_customer}, ${ids.i_product}) RETURNING i_account`);
      accounts.push(a.i_account);
    }
    await eventually(async () => {
      const rows = await deliveries();
      return rows.length === 4 && rows.every((r) => r.state === 'DELIVERED' || r.state === 'FAILED');
    }, 15_000, 'four finished deliveries');
  });

  it('refuses bad input with one line on stderr and changes nothing', async () => {
    const before = await everything();
    const cases: [string[], RegExp, number][] = [
      [['resend'], /at least one of --event, --account, --handler, --status, --since/, 2],
      [['resend', '--status', 'PENDING'], /--status 'PENDING': use DELIVERED or FAILED/, 2],
      [['resend', '--since', 'the day before'], /--since 'the day before': use a time/, 2],
      [['resend', '--event', 'abc'], /--event 'abc': use a whole number/, 2],
      [['resend', '--account', '-3'], /account/, 2],
      [['resend', '--handler', 'EventSendr'], /unknown handler 'EventSendr'/, 1],
      [['resend', '--status', 'FAILED', '--bogus'], /unknown option '--bogus'/, 2],
    ];
    const runs = await Promise.all(cases.map(([args]) => espf(t.url, args)));
    runs.forEach((r, i) => {
      const [, reason, code] = cases[i]!;
      assert.equal(r.code, code, show(r));
      assert.equal(r.stdout, '', show(r));
      assert.match(r.stderr, /^[^\n]+\n$/, `one line on stderr:\n${show(r)}`);
      assert.match(r.stderr, reason, show(r));
    });
    assert.deepEqual(await everything(), before);
  });

  it('--dry-run prints the count and changes nothing', async () => {
    const before = await everything();
    const r = await espf(t.url, ['resend', '--status', 'FAILED', '--since', '1 hour', '--dry-run']);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout, '2 deliveries would be re-queued (dry run: nothing changed)\n');
    const none = await espf(t.url, ['resend', '--status', 'FAILED', '--since', '2999-01-01', '--dry-run']);
    assert.equal(none.stdout, '0 deliveries would be re-queued (dry run: nothing changed)\n', show(none));
    assert.deepEqual(await everything(), before);
  });

  it('re-queues every FAILED delivery of the last 24 hours; the running sender sends them again (same i_event)', async () => {
    const failed = (await deliveries()).filter((d) => d.state === 'FAILED');
    assert.equal(failed.length, 2);
    rx.respond = () => ({ status: 200 }); // the HSS is fixed
    const received = rx.received.length;
    const r = await espf(t.url, ['resend', '--status', 'FAILED', '--since', '24 hours']);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout, 're-queued 2 deliveries\n');
    assert.equal(r.stderr, '', 'one batch: no progress lines');
    await rx.waitFor(() => rx.received.length >= received + 2, 10_000, 'the two resent events');
    assert.deepEqual(rx.received.slice(received).map((x) => x.json.variables.i_event).sort(), failed.map((d) => Number(d.i_event)).sort());
    const after = await eventually(async () => {
      const rows = (await deliveries()).filter((d) => failed.some((f) => f.i_event === d.i_event));
      return rows.every((d) => d.state === 'DELIVERED') && rows;
    }, 10_000, 'the resent deliveries DELIVERED');
    for (const d of after) {
      assert.equal(d.attempts, 1, 'attempts started again from 0');
      assert.equal(d.last_error, null);
      assert.equal(d.requeued, false, 'the sender took the mark');
      assert.ok(d.finished_at > failed[0]!.finished_at);
    }
    const [st] = await t.db.query(sql`SELECT count(*)::int AS n FROM espf.account_provisioning_statuses WHERE status <> 'OK'`);
    assert.equal(st.n, 0, 'the account statuses are OK again');
  });

  it('by --event (repeatable) and by --account with --handler: only those, and a delivered event is sent again', async () => {
    const rows = await deliveries();
    const [e1, e2] = [rows[0]!.i_event, rows[1]!.i_event];
    const before = rx.received.length;
    const r = await espf(t.url, ['resend', '--event', String(e1), '--event', String(e2)]);
    assert.equal(r.stdout, 're-queued 2 deliveries\n', show(r));
    await rx.waitFor(() => rx.received.length >= before + 2, 10_000, 'two resent events');
    assert.deepEqual(rx.received.slice(before).map((x) => x.json.variables.i_event).sort(), [Number(e1), Number(e2)].sort());

    await eventually(async () => (await deliveries()).every((d) => d.state === 'DELIVERED'), 10_000, 'all delivered');
    const acct = accounts[3]!;
    const mid = rx.received.length;
    const r2 = await espf(t.url, ['resend', '--account', String(acct), '--handler', 'EventSender', '--status', 'delivered']);
    assert.equal(r2.stdout, 're-queued 1 delivery\n', show(r2));
    await rx.waitFor(() => rx.received.length >= mid + 1, 10_000, 'the account event');
    assert.equal(rx.received[mid]!.json.variables.i_account, acct);
    // Nothing more than what was asked for arrives.
    await eventually(async () => (await deliveries()).every((d) => d.state === 'DELIVERED' && !d.requeued), 10_000, 'settled');
    assert.equal(rx.received.length, mid + 1);
  });

  it('large sets: batches with progress on stderr, the handler\'s current instance, and nothing taken twice', async function () {
    this.timeout(60_000);
    // 12,000 finished rows of a handler now served by another instance (not running), recorded by 'main'.
    await t.db.query(sql`INSERT INTO espf.handlers (name, kind, instance) VALUES ('Archive', 'http', 'archive')`);
    await t.db.query(sql`INSERT INTO espf.http_handlers (handler, url) VALUES ('Archive', '{http://127.0.0.1:9/never}')`);
    await t.db.query(sql`
      INSERT INTO espf.event_deliveries (i_event, handler, state, event_type, order_key, i_account, instance, attempts, urls_done,
                                         last_http_status, finished_at)
      SELECT 1000000 + g, 'Archive', CASE WHEN g % 4 = 0 THEN 'FAILED' ELSE 'DELIVERED' END, 'Account/New', 'a:' || g, g, 'main', 3, 1,
             200, now() - interval '1 hour'
        FROM generate_series(1, 12000) g`);
    // --handler alone is a wide selection: refused with its count, changing nothing, then run with --confirm of that count.
    const wide = await espf(t.url, ['resend', '--handler', 'Archive', '--batch', '5000']);
    assert.equal(wide.code, 2, show(wide));
    assert.equal(wide.stderr, 'espf: resend: this selection matches 12000 deliveries and is not narrowed by --event, --account, --status FAILED or --handler with --since: confirm with --confirm 12000, or narrow it (nothing changed)\n');
    const wrong = await espf(t.url, ['resend', '--handler', 'Archive', '--confirm', '11999']);
    assert.match(wrong.stderr, /not 11999: confirm with --confirm 12000/, show(wrong));
    const [{ n: untouched }] = await t.db.query(sql`SELECT count(*)::int AS n FROM espf.event_deliveries WHERE handler = 'Archive' AND requeued`);
    assert.equal(untouched, 0);
    const r = await espf(t.url, ['resend', '--handler', 'Archive', '--batch', '5000', '--confirm', '12000']);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout, 're-queued 12000 deliveries\n');
    assert.deepEqual(r.stderr.trim().split('\n'), [
      'espf resend: re-queued 5000 of 12000 (41%)',
      'espf resend: re-queued 10000 of 12000 (83%)',
      'espf resend: re-queued 12000 of 12000 (100%)',
    ]);
    const [s] = await t.db.query(sql`
      SELECT count(*)::int AS n,
             count(*) FILTER (WHERE state = 'PENDING' AND attempts = 0 AND urls_done = 0 AND last_error IS NULL
                                AND next_attempt_at IS NULL AND finished_at IS NULL AND requeued AND instance = 'archive')::int AS requeued
        FROM espf.event_deliveries WHERE handler = 'Archive'`);
    assert.deepEqual(s, { n: 12000, requeued: 12000 });
    // Waiting rows are not finished: a second resend takes none of them.
    const again = await espf(t.url, ['resend', '--handler', 'Archive']);
    assert.equal(again.stdout, 're-queued 0 deliveries\n', show(again));
    // The EventSender rows were not touched.
    assert.ok((await deliveries()).every((d) => d.state === 'DELIVERED' && !d.requeued));
  });

  it('espf.resend in SQL: one batch per call, refusals name the rule', async () => {
    await t.db.query(sql`UPDATE espf.event_deliveries SET state = 'DELIVERED', finished_at = now(), requeued = false WHERE handler = 'Archive'`);
    const [a] = await t.db.query(sql`SELECT espf.resend(handler => 'Archive', max_rows => 7000) AS n`);
    const [b] = await t.db.query(sql`SELECT espf.resend(handler => 'Archive', max_rows => 7000) AS n`);
    const [c] = await t.db.query(sql`SELECT espf.resend(handler => 'Archive', max_rows => 7000) AS n`);
    assert.deepEqual([Number(a.n), Number(b.n), Number(c.n)], [7000, 5000, 0]);
    await assert.rejects(t.db.query(sql`SELECT espf.resend()`), /at least one of/);
    await assert.rejects(t.db.query(sql`SELECT espf.resend(status => 'RETRY')`), /use DELIVERED or FAILED/);
    await assert.rejects(t.db.query(sql`SELECT espf.resend(handler => 'Nope')`), /unknown handler 'Nope'/);
  });

  it('re-queues at most --max-rows per run and says how many more matched', async () => {
    await t.db.query(sql`UPDATE espf.event_deliveries SET state = 'DELIVERED', finished_at = now() - interval '1 minute', requeued = false WHERE handler = 'Archive'`);
    const r = await espf(t.url, ['resend', '--handler', 'Archive', '--since', '1 day', '--max-rows', '5000', '--batch', '2000']);
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout, 're-queued 5000 deliveries: the most one run re-queues (--max-rows 5000); 7000 more matched: run it again\n');
    const [{ n }] = await t.db.query(sql`SELECT count(*)::int AS n FROM espf.event_deliveries WHERE handler = 'Archive' AND requeued`);
    assert.equal(n, 5000);
  });
});
