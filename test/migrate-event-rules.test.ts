import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from '@databases/pg';
import { connect } from '../src/db/connect.ts';
import { migrate } from '../src/migrate/migrate.ts';
import { MIGRATIONS_DIR, ROOT } from '../src/paths.ts';
import { createTestDatabase } from './support/database.ts';
import { eventually, TestReceiver } from './support/receiver.ts';
import { configureEventSender, seedCustomer, startSender } from './support/sender.ts';

/**
 * Upgrading to event rules (migrations/0010_event_rules.sql, sql/100_builtin_rules.sql)
 * from the release before them, with events and deliveries in the database: the
 * hand-written capture triggers give way to the built-in rules in one
 * transaction, enabled types stay captured, data stays; and a migrate while a
 * billing transaction holds a lock gives up after lock_timeout (so later
 * billing writes wait for a moment only) and succeeds once the lock is gone.
 */

/** The last commit before event rules: its migrations/ and sql/ are the previous release. */
const PREVIOUS_RELEASE = '96d571c';

async function previousRelease(): Promise<{ migrations: string; repeatable: string; dir: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'espf-prev-'));
  const tar = execFileSync('git', ['-C', ROOT, 'archive', PREVIOUS_RELEASE, 'migrations', 'sql']);
  execFileSync('tar', ['-x', '-C', dir], { input: tar });
  return { migrations: path.join(dir, 'migrations'), repeatable: path.join(dir, 'sql'), dir };
}

const emptyDatabase = () => createTestDatabase({ empty: true });

describe('upgrade to event rules (0010_event_rules)', () => {
  // Not test/support/fixture.ts: each test needs a database the previous release migrates, not a clone of this one's template.
  let prev: Awaited<ReturnType<typeof previousRelease>>;
  let e: Awaited<ReturnType<typeof emptyDatabase>>;
  before(async () => {
    prev = await previousRelease();
    // Only the migrations that shipped with that release.
    const shipped = new Set(await readdir(prev.migrations));
    const current = await readdir(MIGRATIONS_DIR);
    assert.ok(!shipped.has('0010_event_rules.sql'));
    assert.ok(current.includes('0010_event_rules.sql'));
  });
  beforeEach(async () => { e = await emptyDatabase(); });
  afterEach(async () => { await e.drop(); });
  after(async () => { await rm(prev.dir, { recursive: true, force: true }); });

  it('keeps events, deliveries and enabled capture; the hand-written triggers give way to built-in rules', async () => {
    await migrate(e.db, { migrations: prev.migrations, repeatable: prev.repeatable });
    const rx = await new TestReceiver().listen();
    try {
      const ids = await seedCustomer(e.db);
      await configureEventSender(e.db, rx.url, ['Account/New', 'Account/Blocked']);
      const [a] = await e.db.query(sql`INSERT INTO billing.account (id, i_customer, i_product) VALUES ('u-1', ${ids.i_customer}, ${ids.i_product}) RETURNING i_account`);
      await e.db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account = ${a.i_account}`);
      // Their deliveries, as that release's espf run recorded them.
      await e.db.query(sql`SELECT espf.record_deliveries('main', (SELECT jsonb_agg(jsonb_build_object(
          'i_event', i_event, 'handler', 'EventSender', 'state', 'DELIVERED', 'event_type', event_type,
          'order_key', 'a:' || (variables->>'i_account'), 'i_account', (variables->>'i_account')::bigint, 'attempts', 1, 'urls_done', 1,
          'last_http_status', 200, 'finished_at', extract(epoch FROM now()) * 1000, 'n', i_event)) FROM espf.events))`);
      const events = await e.db.query(sql`SELECT i_event, event_type, variables FROM espf.events ORDER BY i_event`);
      const deliveries = await e.db.query(sql`SELECT i_event, handler, state FROM espf.event_deliveries ORDER BY i_event`);
      assert.equal(events.length, 2);
      assert.equal(deliveries.length, 2);

      const r = await migrate(e.db);
      assert.ok(r.applied.includes('0010_event_rules.sql'), JSON.stringify(r.applied));
      assert.deepEqual(r.keptRules, []);

      assert.deepEqual(await e.db.query(sql`SELECT i_event, event_type, variables FROM espf.events ORDER BY i_event`), events);
      assert.deepEqual(await e.db.query(sql`SELECT i_event, handler, state FROM espf.event_deliveries ORDER BY i_event`), deliveries);
      const old = await e.db.query(sql`SELECT tgname FROM pg_trigger g JOIN pg_proc f ON f.oid = g.tgfoid
        WHERE f.proname LIKE 'capture\\_%' AND NOT g.tgisinternal`);
      assert.deepEqual(old, [], 'no hand-written capture trigger left');
      const active = await e.db.query(sql`SELECT DISTINCT event_type FROM espf.capture_triggers WHERE active ORDER BY 1`);
      assert.deepEqual(active.map((x) => x.event_type), ['Account/Blocked', 'Account/New']);

      const s = await startSender(e.db, e.url);
      try {
        await e.db.query(sql`UPDATE billing.account SET blocked = false WHERE i_account = ${a.i_account}`);
        await e.db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account = ${a.i_account}`);
        await rx.waitFor(() => rx.received.length >= 1);
        const last = rx.received.at(-1)!.json;
        assert.equal(last.event_type, 'Account/Blocked');
        assert.deepEqual(Object.keys(last.variables).sort(), ['event_time', 'i_account', 'i_env', 'i_event']);
        await eventually(async () => (await e.db.query(sql`SELECT count(*)::int AS n FROM espf.event_deliveries WHERE state = 'DELIVERED'`))[0].n >= 3);
        assert.equal(rx.received.length, 1, 'Account/Unblocked stays disabled');
      } finally {
        await s.stop();
      }
    } finally {
      await rx.close();
    }
  });

  it('a migrate while a billing transaction holds a lock blocks later billing writes for lock_timeout at most, then succeeds', async () => {
    await migrate(e.db, { migrations: prev.migrations, repeatable: prev.repeatable });
    const ids = await seedCustomer(e.db);
    await e.db.query(sql`INSERT INTO billing.account (id, i_customer, i_product) SELECT 'l-' || g, ${ids.i_customer}, ${ids.i_product} FROM generate_series(1, 2) g`);
    const blocker = connect({ connectionString: e.url, poolSize: 1 });
    const writer = connect({ connectionString: e.url, poolSize: 1 });
    try {
      let release!: () => void;
      const gate = new Promise<void>((r) => { release = r; });
      let held!: () => void;
      const holding = new Promise<void>((r) => { held = r; });
      const tx = blocker.tx(async (c) => {
        await c.query(sql`UPDATE billing.account SET balance = balance + 1 WHERE id = 'l-1'`);
        held();
        await gate;
      });
      await holding;
      const migrating = migrate(e.db);
      migrating.catch(() => undefined);
      // Wait until the migrate waits for its lock on billing.account.
      await eventually(async () => (await writer.query(sql`SELECT count(*)::int AS n FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
        WHERE NOT l.granted AND c.relname = 'account'`))[0].n > 0, 20_000, 'the migrate to wait for its lock');
      const t0 = Date.now();
      await writer.query(sql`UPDATE billing.account SET balance = balance + 1 WHERE id = 'l-2'`);
      const waited = Date.now() - t0;
      assert.ok(waited < 4000, `a billing write waited ${waited} ms behind the migrate`);
      release();
      await tx;
      const r = await migrating;
      assert.ok(r.applied.includes('0010_event_rules.sql'));
      const [col] = await e.db.query(sql`SELECT count(*)::int AS n FROM information_schema.columns
        WHERE table_schema = 'billing' AND table_name = 'account' AND column_name = 'expiration_date'`);
      assert.equal(col.n, 1);
    } finally {
      await blocker.dispose();
      await writer.dispose();
    }
  });
});

