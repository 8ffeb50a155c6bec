// espf.record_deliveries takes a batch as one array per column (sql/400_results.sql):
// the arrays src/db/deliveries.ts sends (node-postgres writes their literals) must reach the
// row as the record stage gave them, whatever the text holds; the JSON form of
// the function (an older sender during an upgrade) still records the same rows.
import assert from 'node:assert/strict';
import { sql } from '@databases/pg';
import { recordDeliveries, type DeliveryRecord } from '../src/db/deliveries.ts';
import { migrate } from '../src/migrate/migrate.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { releaseBeforeChangeOf, type ReleasedCode } from './support/upgrade.ts';

const T = Date.UTC(2026, 11, 7, 5, 0, 0, 123);

function rec(i: number, over: Partial<DeliveryRecord> = {}): DeliveryRecord {
  return {
    i_event: i, handler: 'EventSender', state: 'DELIVERED', event_type: 'Account/Blocked', order_key: `a:${i}`, i_account: i,
    commit_lsn: '0/16B3748', attempts: 1, urls_done: 1, last_http_status: 200, last_error: null, next_attempt_at: null,
    committed_at: T - 1000, first_attempt_at: T - 10, last_attempt_at: T, finished_at: T, steps_done: 0, step_answers: null,
    created_at: null, ...over,
  };
}

const COLUMNS = sql`i_event::int, handler, state, event_type, order_key, i_account::int, commit_lsn::text, attempts, urls_done,
  last_http_status, last_error, extract(epoch FROM next_attempt_at) * 1000 AS next_attempt_at,
  extract(epoch FROM committed_at) * 1000 AS committed_at, extract(epoch FROM first_attempt_at) * 1000 AS first_attempt_at,
  extract(epoch FROM last_attempt_at) * 1000 AS last_attempt_at, extract(epoch FROM finished_at) * 1000 AS finished_at,
  steps_done, step_answers`;

describe('espf.record_deliveries: one array per column', function () {
  let t: TestDatabase;
  before(async () => {
    t = await createTestDatabase();
    await t.db.query(sql`INSERT INTO espf.events (i_event, event_type, variables, created_at)
                         SELECT g, 'Account/Blocked', jsonb_build_object('i_account', g), to_timestamp(${T / 1000}) FROM generate_series(1, 20) g`);
  });
  after(async () => { await t?.drop(); });

  it('writes every column as given, whatever the text holds; a stale outcome is dropped', async () => {
    const nasty = ['', 'NULL', 'null', ' spaced ', 'a,b', '{braces}', 'quote " here', 'back\\slash', 'both \\" end\\', 'line\nbreak\ttab',
      'ünïcödé ✓', '"', '\\'];
    const answers = [{ status: 200, headers: { 'x-a': 'q"uote' }, body: { s: 'back\\slash "and" {braces}', n: [1, null] } }];
    const records = nasty.map((s, k) => rec(1 + k, {
      order_key: s, last_error: s, state: k % 3 === 0 ? 'RETRY' : k % 3 === 1 ? 'FAILED' : 'PENDING',
      i_account: k % 2 ? null : 1 + k, commit_lsn: k % 4 ? '0/16B3748' : null, last_http_status: k % 2 ? null : 503,
      next_attempt_at: k % 3 === 0 ? T + 60_000 : null, finished_at: k % 3 === 1 ? T : null,
      steps_done: k % 3 === 2 ? 1 : 0, step_answers: k % 3 === 2 ? answers : null, created_at: T,
    }));
    records.push(rec(19, { created_at: T + 5000 }), rec(20, { created_at: T }));
    assert.deepEqual(await recordDeliveries(t.db, 'main', records), [19], 'the outcome whose event has another created_at is dropped');
    const rows = await t.db.query(sql`SELECT ${COLUMNS} FROM espf.event_deliveries ORDER BY i_event`);
    const want = records.filter((r) => r.i_event !== 19).map(({ created_at: _, ...r }) => ({ ...r }));
    assert.deepEqual(rows.map((r) => ({ ...r, next_attempt_at: r.next_attempt_at === null ? null : Number(r.next_attempt_at),
      committed_at: Number(r.committed_at), first_attempt_at: Number(r.first_attempt_at), last_attempt_at: Number(r.last_attempt_at),
      finished_at: r.finished_at === null ? null : Number(r.finished_at) })), want);
    // The account statuses: the last record of each account.
    const [s] = await t.db.query(sql`SELECT status, message FROM espf.account_provisioning_statuses WHERE i_account = 1`);
    assert.deepEqual(s, { status: 'RETRY', message: '' });
  });

  it('the JSON form (an older sender) records the same rows', async () => {
    const records = [rec(20, { state: 'FAILED', last_error: 'a "b" \\c', created_at: T }), rec(19, { created_at: T + 5000 })];
    const [r] = await t.db.query(sql`SELECT espf.record_deliveries('main', ${JSON.stringify(records.map((x, n) => ({ ...x, n })))}::json, true) AS stale`);
    assert.deepEqual(r.stale.map(Number), [19]);
    const [row] = await t.db.query(sql`SELECT state, last_error FROM espf.event_deliveries WHERE i_event = 20`);
    assert.deepEqual(row, { state: 'FAILED', last_error: 'a "b" \\c' });
  });

  it('a fresh record is a plain insert; one whose row exists fails the batch whole (23505); not fresh, it updates', async () => {
    await t.db.query(sql`INSERT INTO espf.events (i_event, event_type, variables, created_at)
                         SELECT g, 'Account/Blocked', jsonb_build_object('i_account', g), to_timestamp(${T / 1000}) FROM generate_series(21, 24) g`);
    const [{ n: before }] = await t.db.query(sql`SELECT count(*)::int AS n FROM espf.event_deliveries WHERE i_event > 20`);
    assert.equal(before, 0);
    // 21 and 22 fresh, 23 not: all three are written.
    assert.deepEqual(await recordDeliveries(t.db, 'main', [rec(21, { fresh: true, created_at: T }), rec(22, { created_at: T, fresh: true }), rec(23, { created_at: T, state: 'RETRY' })]), []);
    // 22 again as fresh (its row exists), with 24 new: nothing of the batch is written.
    await assert.rejects(recordDeliveries(t.db, 'main', [rec(24, { created_at: T, fresh: true }), rec(22, { created_at: T, fresh: true, state: 'FAILED', last_error: 'x' })]),
      (err: { code?: string }) => err.code === '23505');
    assert.deepEqual(await t.db.query(sql`SELECT i_event::int, state FROM espf.event_deliveries WHERE i_event > 20 ORDER BY 1`),
      [{ i_event: 21, state: 'DELIVERED' }, { i_event: 22, state: 'DELIVERED' }, { i_event: 23, state: 'RETRY' }]);
    // Written again with no record fresh (what the record stage does): 22 is updated, 24 inserted.
    assert.deepEqual(await recordDeliveries(t.db, 'main', [rec(24, { created_at: T }), rec(22, { created_at: T, state: 'FAILED', last_error: 'x', finished_at: T })]), []);
    assert.deepEqual(await t.db.query(sql`SELECT i_event::int, state, last_error FROM espf.event_deliveries WHERE i_event > 20 ORDER BY 1`),
      [{ i_event: 21, state: 'DELIVERED', last_error: null }, { i_event: 22, state: 'FAILED', last_error: 'x' },
       { i_event: 23, state: 'RETRY', last_error: null }, { i_event: 24, state: 'DELIVERED', last_error: null }]);
    // The overview's counts took each finished row once (22: DELIVERED taken out, FAILED counted).
    const [m] = await t.db.query(sql`SELECT sum(delivered)::int AS delivered, sum(failed)::int AS failed FROM espf.delivery_minutes
                                      WHERE handler = 'EventSender' AND minute = date_trunc('minute', to_timestamp(${T / 1000}))`);
    const [want] = await t.db.query(sql`SELECT count(*) FILTER (WHERE state <> 'FAILED')::int AS delivered, count(*) FILTER (WHERE state = 'FAILED')::int AS failed
                                         FROM espf.event_deliveries WHERE handler = 'EventSender' AND state IN ('DELIVERED', 'FAILED') AND finished_at IS NOT NULL`);
    assert.deepEqual(m, want);
  });

  it('the form without `fresh` (an older sender) writes every record as INSERT … ON CONFLICT', async () => {
    const [r] = await t.db.query(sql`SELECT espf.record_deliveries('main', true, '{21}'::bigint[], '{EventSender}'::text[], '{FAILED}'::text[],
      '{Account/Blocked}'::text[], '{a:21}'::text[], '{21}'::bigint[], '{0/16B3748}'::pg_lsn[], '{2}'::int[], '{0}'::int[], '{500}'::int[],
      '{boom}'::text[], '{NULL}'::float8[], ${`{${T - 1000}}`}::float8[], ${`{${T}}`}::float8[], ${`{${T}}`}::float8[], ${`{${T}}`}::float8[],
      ${`{${T}}`}::float8[], '{0}'::int[], '{NULL}'::jsonb[]) AS stale`);
    assert.deepEqual(r.stale, []);
    const [row] = await t.db.query(sql`SELECT state, attempts, last_error FROM espf.event_deliveries WHERE i_event = 21`);
    assert.deepEqual(row, { state: 'FAILED', attempts: 2, last_error: 'boom' });
  });
});

describe('espf.record_deliveries: upgrade from the release before `fresh`', function () {
  this.timeout(60_000);
  let t: TestDatabase;
  let prev: ReleasedCode | null;
  /** The call of a sender of that release: one array per column, no `fresh`. */
  const olderSender = (i: number, state: string, error: string | null) => t.db.query(sql`
    SELECT espf.record_deliveries('main', true, ${`{${i}}`}::bigint[], '{EventSender}'::text[], ${`{${state}}`}::text[],
      '{Account/Blocked}'::text[], ${`{a:${i}}`}::text[], ${`{${i}}`}::bigint[], '{0/16B3748}'::pg_lsn[], '{1}'::int[], '{0}'::int[],
      '{NULL}'::int[], ${`{${error ?? 'NULL'}}`}::text[], '{NULL}'::float8[], ${`{${T - 1000}}`}::float8[], ${`{${T}}`}::float8[],
      ${`{${T}}`}::float8[], ${`{${T}}`}::float8[], ${`{${T}}`}::float8[], '{0}'::int[], '{NULL}'::jsonb[]) AS stale`);
  before(async function () {
    prev = await releaseBeforeChangeOf('sql/400_results.sql');
    if (!prev) this.skip(); // not a git checkout
    t = await createTestDatabase({ empty: true });
    await prev.migrate(t.db, { migrations: prev.migrations, repeatable: prev.repeatable });
    await t.db.query(sql`INSERT INTO espf.events (i_event, event_type, variables, created_at)
                         SELECT g, 'Account/Blocked', jsonb_build_object('i_account', g), to_timestamp(${T / 1000}) FROM generate_series(1, 4) g`);
    for (const i of [1, 2]) assert.deepEqual((await olderSender(i, 'RETRY', 'boom'))[0].stale, []);
  });
  after(async () => { await t?.drop(); await prev?.remove(); });

  it('keeps events and deliveries; an older sender and this one both record on the upgraded database', async () => {
    await migrate(t.db);
    assert.deepEqual((await t.db.query(sql`SELECT count(*)::int AS n FROM espf.events`))[0].n, 4);
    // A sender of the release before, still running during the upgrade:
    assert.deepEqual((await olderSender(2, 'FAILED', 'gone'))[0].stale, []);
    // This release's: a fresh first outcome (3) and an update (1).
    assert.deepEqual(await recordDeliveries(t.db, 'main', [rec(3, { created_at: T, fresh: true }), rec(1, { created_at: T })]), []);
    assert.deepEqual(await t.db.query(sql`SELECT i_event::int, state, last_error FROM espf.event_deliveries ORDER BY 1`), [
      { i_event: 1, state: 'DELIVERED', last_error: null }, { i_event: 2, state: 'FAILED', last_error: 'gone' },
      { i_event: 3, state: 'DELIVERED', last_error: null }]);
    // The sender role may run both forms.
    const sig = 'text, boolean, bigint[], text[], text[], text[], text[], bigint[], pg_lsn[], int[], int[], int[], text[], float8[], float8[], float8[], float8[], float8[], float8[], int[], jsonb[]';
    const [p] = await t.db.query(sql`SELECT has_function_privilege('espf_sender', ${`espf.record_deliveries(${sig}, boolean[])`}, 'EXECUTE') AS now,
                                            has_function_privilege('espf_sender', ${`espf.record_deliveries(${sig})`}, 'EXECUTE') AS older`);
    assert.deepEqual(p, { now: true, older: true });
  });
});
