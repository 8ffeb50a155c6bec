import assert from 'node:assert/strict';
import { sql } from '@databases/pg';
import type { Db } from '../src/db/connect.ts';
import { recordDeliveries, type DeliveryRecord } from '../src/db/deliveries.ts';
import type { DeliveryState } from '../src/db/delivery-states.ts';
import { purgeBatch } from '../src/db/maintenance.ts';
import { resendFiltered } from '../src/db/resend.ts';
import { migrate } from '../src/migrate/migrate.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { databaseAtPreviousRelease } from './support/upgrade.ts';

/**
 * espf.delivery_minutes (migrations/0023_delivery_minutes.sql,
 * sql/420_delivery_minutes.sql): the overview's per-minute counts stay equal to
 * a direct count of espf.event_deliveries through the record path, retries,
 * failures, a dispatcher's claims, a resend and a purge, and after an upgrade.
 */

const MIN = 60_000;

/** The rollup as it is, and as a direct count of the deliveries would make it (minutes from kept_from on). */
async function rollupAndCount(db: Db) {
  const rollup = await db.query(sql`SELECT handler, minute, delivered::int, failed::int FROM espf.delivery_minutes ORDER BY handler, minute`);
  const direct = await db.query(sql`
    SELECT d.handler, date_trunc('minute', d.finished_at) AS minute,
           count(*) FILTER (WHERE d.state IN ('DELIVERED', 'DISPATCHED'))::int AS delivered,
           count(*) FILTER (WHERE d.state = 'FAILED')::int AS failed
      FROM espf.event_deliveries d
     WHERE d.state IN ('DELIVERED', 'DISPATCHED', 'FAILED')
       AND d.finished_at >= (SELECT kept_from FROM espf.delivery_minutes_state)
     GROUP BY 1, 2 ORDER BY 1, 2`);
  return { rollup, direct };
}

async function assertExact(db: Db, when: string): Promise<number> {
  const { rollup, direct } = await rollupAndCount(db);
  assert.deepEqual(rollup, direct, `the rollup after ${when}`);
  return rollup.length;
}

interface Rec { i: number; state: string; finishedAgoMs?: number; attempts?: number }

/** One batch through espf.record_deliveries, as the record stage writes it (src/delivery/results-writer.ts). */
async function record(db: Db, recs: readonly Rec[], handler = 'EventSender'): Promise<void> {
  const now = Date.now();
  const rows: DeliveryRecord[] = recs.map((r) => ({
    i_event: r.i, handler, state: r.state as DeliveryState, event_type: 'Account/Blocked', order_key: `a:${r.i}`, i_account: r.i,
    commit_lsn: '0/16B3748', attempts: r.attempts ?? 1, urls_done: 0, last_http_status: r.state === 'DELIVERED' ? 200 : 503,
    last_error: r.state === 'DELIVERED' ? null : 'HTTP 503', next_attempt_at: r.state === 'RETRY' ? now + MIN : null,
    committed_at: null, first_attempt_at: now - (r.finishedAgoMs ?? 0), last_attempt_at: now - (r.finishedAgoMs ?? 0),
    finished_at: r.finishedAgoMs === undefined ? null : now - r.finishedAgoMs, created_at: null, steps_done: 0, step_answers: null,
  }));
  assert.deepEqual(await recordDeliveries(db, 'main', rows), []);
}

describe('console rollup: espf.delivery_minutes', function () {
  let t: TestDatabase;
  before(async () => {
    t = await createTestDatabase();
    await t.db.query(sql`INSERT INTO espf.events (i_event, event_type, variables)
                         SELECT g, 'Account/Blocked', jsonb_build_object('i_event', g, 'i_account', g) FROM generate_series(1, 400) g`);
  });
  after(async () => { await t?.drop(); });

  it('matches a direct count after deliveries, retries, failures, a resend and a purge; the overview reads it', async () => {
    const db = t.db;
    const [state] = await db.query(sql`SELECT built, kept_from::text FROM espf.delivery_minutes_state`);
    assert.deepEqual(state, { built: true, kept_from: '-infinity' }, 'a new database keeps every minute');
    // 1..100 delivered now, 101..150 over the last 3 hours, 151..170 30 hours ago
    await record(db, Array.from({ length: 100 }, (_, k) => ({ i: 1 + k, state: 'DELIVERED', finishedAgoMs: 0 })));
    await record(db, Array.from({ length: 50 }, (_, k) => ({ i: 101 + k, state: 'DELIVERED', finishedAgoMs: k * 3.6 * MIN })));
    await record(db, Array.from({ length: 20 }, (_, k) => ({ i: 151 + k, state: 'DELIVERED', finishedAgoMs: 30 * 60 * MIN + k * MIN })));
    // 201..240 retried, then 201..220 delivered and 221..240 failed for good; 241..250 still wait
    await record(db, Array.from({ length: 50 }, (_, k) => ({ i: 201 + k, state: 'RETRY' })));
    assert.ok(await assertExact(db, 'deliveries and retries') > 3);
    await record(db, Array.from({ length: 40 }, (_, k) => ({ i: 201 + k, state: k < 20 ? 'DELIVERED' : 'FAILED', finishedAgoMs: 0, attempts: 3 })));
    // a failure recorded a second time (a replay after a reconnect): counted once
    await record(db, [{ i: 221, state: 'FAILED', finishedAgoMs: 0, attempts: 3 }]);
    await assertExact(db, 'failures');
    const overview = async () => (await db.query(sql`
      SELECT failed_24h::int, waiting::int, retry::int, delivered_per_min FROM espf.console_overview WHERE handler = 'EventSender'`))[0];
    let o = await overview();
    assert.equal(o.failed_24h, 20);
    assert.equal(o.waiting, 10);
    // Delivered in the window: 100 + 20 now, and 101 and 102 (0 and 3.6 minutes ago), over 5 to 6 minutes.
    assert.ok(o.delivered_per_min >= 122 / 6 && o.delivered_per_min <= 122 / 5, `delivered_per_min ${o.delivered_per_min}`);
    const series = async () => db.query(sql`SELECT sum(delivered)::int AS delivered, sum(failed)::int AS failed FROM espf.console_series(6, 36) WHERE handler = 'EventSender'`);
    assert.deepEqual(await series(), [{ delivered: 170, failed: 20 }]);

    // A resend of the failed ones: they leave the counts, and come back when delivered.
    const n = await resendFiltered(db, { events: null, account: null, handler: 'EventSender', status: 'FAILED', since: null, until: null, type: null, createdSince: null, createdUntil: null }, 1000, false);
    assert.equal(n, 20);
    await assertExact(db, 'a resend');
    o = await overview();
    assert.equal(o.failed_24h, 0);
    await record(db, Array.from({ length: 20 }, (_, k) => ({ i: 221 + k, state: 'DELIVERED', finishedAgoMs: 0, attempts: 1 })));
    await assertExact(db, 'the resent ones delivered');
    assert.deepEqual(await series(), [{ delivered: 190, failed: 0 }]);

    // A purge of what finished more than a day ago: their minutes go with them.
    const before = await db.query(sql`SELECT count(*)::int AS n FROM espf.delivery_minutes WHERE minute < now() - interval '1 day'`);
    assert.ok(before[0].n >= 20);
    let purged = 0;
    for (let k; (k = await purgeBatch(db, 'purge_deliveries', new Date(Date.now() - 24 * 60 * MIN), 7)) > 0;) purged += k;
    assert.equal(purged, 20);
    await assertExact(db, 'a purge');
    const after = await db.query(sql`SELECT count(*)::int AS n FROM espf.delivery_minutes WHERE minute < now() - interval '1 day'`);
    assert.equal(after[0].n, 0, 'no empty minute is left behind');
    // A DBA's own statements count too: a DELETE, a TRUNCATE.
    await db.query(sql`DELETE FROM espf.event_deliveries WHERE i_event <= 10`);
    await assertExact(db, 'a DELETE');
    await db.query(sql`TRUNCATE espf.event_deliveries CASCADE`);
    assert.equal(await assertExact(db, 'a TRUNCATE'), 0);
  });

  it('the record path counts what it writes itself: rewritten rows, dropped outcomes, the sender role, and other writes after it in one transaction', async () => {
    const db = t.db;
    await db.query(sql`TRUNCATE espf.event_deliveries`);
    await assertExact(db, 'a TRUNCATE');
    // 301..320 delivered now; then recorded again (a replay) as finished an hour ago: they move to that minute
    await record(db, Array.from({ length: 20 }, (_, k) => ({ i: 301 + k, state: 'DELIVERED', finishedAgoMs: 0 })));
    await record(db, Array.from({ length: 20 }, (_, k) => ({ i: 301 + k, state: 'DELIVERED', finishedAgoMs: 60 * MIN })));
    assert.equal(await assertExact(db, 'rows rewritten into another minute'), 1);
    // delivered, then failed for good in the same batch as new ones; then back to RETRY (nothing counts)
    await record(db, [{ i: 301, state: 'FAILED', finishedAgoMs: 0 }, { i: 321, state: 'FAILED', finishedAgoMs: 0 }, { i: 322, state: 'RETRY' }]);
    await assertExact(db, 'a delivered row failed, mixed with new rows');
    await record(db, [{ i: 301, state: 'RETRY' }, { i: 321, state: 'RETRY' }]);
    await assertExact(db, 'finished rows recorded waiting again');
    // An outcome whose event is another one now (its created_at differs) writes nothing and counts nothing.
    const [ev] = await db.query(sql`SELECT extract(epoch FROM created_at) * 1000 AS ms FROM espf.events WHERE i_event = 330`);
    const stale: DeliveryRecord[] = [{ i_event: 330, handler: 'EventSender', state: 'DELIVERED', event_type: 'Account/Blocked', order_key: 'a:330', i_account: 330,
      commit_lsn: '0/16B3748', attempts: 1, urls_done: 1, last_http_status: 200, last_error: null, next_attempt_at: null, committed_at: null,
      first_attempt_at: Date.now(), last_attempt_at: Date.now(), finished_at: Date.now(), created_at: Number(ev.ms) + 5000,
      steps_done: 0, step_answers: null }];
    assert.deepEqual(await recordDeliveries(db, 'main', stale), [330]);
    await assertExact(db, 'a dropped outcome');
    // As espf run records (role espf_sender), and a statement of the same transaction after it counts through the trigger.
    await db.tx(async (tx) => {
      await tx.query(sql`SET LOCAL ROLE espf_sender`);
      await record(tx as unknown as Db, Array.from({ length: 10 }, (_, k) => ({ i: 331 + k, state: 'DELIVERED', finishedAgoMs: 0 })));
      await tx.query(sql`RESET ROLE`);
      await tx.query(sql`INSERT INTO espf.event_deliveries (i_event, handler, state, event_type, order_key, i_account, instance, attempts, finished_at)
                         SELECT g, 'EventSender', 'DELIVERED', 'Account/Blocked', 'a:' || g, g, 'main', 1, now() FROM generate_series(341, 345) g`);
      await tx.query(sql`UPDATE espf.event_deliveries SET state = 'FAILED' WHERE i_event = 331`);
    });
    const [{ n }] = await db.query(sql`SELECT sum(delivered)::int AS n FROM espf.delivery_minutes WHERE minute >= date_trunc('minute', now() - interval '1 minute')`);
    assert.ok(n >= 14, `the sender's records and the DBA's insert counted (${n})`);
    await assertExact(db, "the sender's records, then a DBA's insert and update in one transaction");
  });

  it('cannot be written by the sender role: only the trigger and espf.record_deliveries write it', async () => {
    await assert.rejects(t.db.tx(async (tx) => {
      await tx.query(sql`SET LOCAL ROLE espf_sender`);
      await tx.query(sql`UPDATE espf.delivery_minutes SET delivered = delivered + 1000`);
    }), (err: { code?: string }) => err.code === '42501');
    await assert.rejects(t.db.tx(async (tx) => {
      await tx.query(sql`SET LOCAL ROLE espf_sender`);
      await tx.query(sql`SELECT espf.add_delivery_minutes('{EventSender}', ARRAY[now()], '{1000}', '{0}')`);
    }), (err: { code?: string }) => err.code === '42501');
    await assertExact(t.db, 'the refused writes');
  });
});

describe('console rollup: upgrade from the release before migrations/0023_delivery_minutes.sql', function () {
  it('counts the deliveries of the last 25 hours at the upgrade, keeps the minutes from there, and stays exact', async function () {
    this.timeout(90_000);
    const prev = await databaseAtPreviousRelease('0023_delivery_minutes.sql', ['420_delivery_minutes.sql']);
    if (!prev) this.skip(); // not a git checkout
    const { db } = prev!;
    try {
      await db.query(sql`INSERT INTO espf.events (i_event, event_type, variables)
                         SELECT g, 'Account/Blocked', jsonb_build_object('i_event', g, 'i_account', g) FROM generate_series(1, 300) g`);
      // 1..100 delivered over the last 2 hours, 101..120 failed 10 minutes ago, 121..200 finished 2 days ago, 201..300 waiting
      await db.query(sql`INSERT INTO espf.event_deliveries (i_event, handler, state, event_type, order_key, i_account, instance, attempts, finished_at)
                         SELECT g, 'EventSender',
                                CASE WHEN g <= 100 OR g BETWEEN 121 AND 200 THEN 'DELIVERED' WHEN g <= 120 THEN 'FAILED' ELSE 'PENDING' END,
                                'Account/Blocked', 'a:' || g, g, 'main', 1,
                                CASE WHEN g <= 100 THEN now() - g * interval '72 seconds'
                                     WHEN g <= 120 THEN now() - interval '10 minutes'
                                     WHEN g <= 200 THEN now() - interval '2 days' - g * interval '1 minute' END
                           FROM generate_series(1, 300) g`);
      const deliveries = await db.query(sql`SELECT to_jsonb(d) AS d FROM espf.event_deliveries d ORDER BY i_event`);
      const r = await migrate(db);
      assert.ok(r.applied.includes('0023_delivery_minutes.sql'), `applied ${r.applied.join(', ')}`);
      assert.deepEqual(await db.query(sql`SELECT to_jsonb(d) AS d FROM espf.event_deliveries d ORDER BY i_event`), deliveries);
      const [st] = await db.query(sql`SELECT built, now() - kept_from BETWEEN interval '25 hours' AND interval '25 hours 2 minutes' AS day_back FROM espf.delivery_minutes_state`);
      assert.deepEqual(st, { built: true, day_back: true });
      assert.ok(await assertExact(db, 'the upgrade') > 10);
      const [o] = await db.query(sql`SELECT failed_24h::int, waiting::int FROM espf.console_overview WHERE handler = 'EventSender'`);
      assert.deepEqual(o, { failed_24h: 20, waiting: 100 });
      // kept exact from there on, old minutes left out: a resend of the old ones, delivered again now
      await db.query(sql`SELECT espf.resend(handler => 'EventSender', status => 'DELIVERED', until => now() - interval '1 day')`);
      await db.query(sql`UPDATE espf.event_deliveries SET state = 'DELIVERED', finished_at = now() WHERE requeued`);
      await assertExact(db, 'a resend of deliveries older than the kept minutes');
      assert.deepEqual((await migrate(db)).applied, [], 'a second migrate applies nothing');
      await assertExact(db, 'a second migrate (the count is not made again)');
    } finally {
      await prev!.dispose();
    }
  });
});
