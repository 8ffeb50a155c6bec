// The catch-up's look-back (sql/450_catch_up.sql espf.catch_up_slack,
// docs/replication.md "The look-back"): events whose transaction started this
// long before the point a catch-up starts from are looked at again. It is a
// setting, espf.catch_up_look_back (10 minutes by default), because the
// outbox keeps no commit position that would make the bound exact.
import assert from 'node:assert/strict';
import { sql } from '@databases/pg';
import { pino } from 'pino';
import { connect } from '../src/db/connect.ts';
import { catchUp } from '../src/run/catch-up.ts';
import { WHOLE } from '../src/run/shard.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { deliveryFixture } from './support/fixture.ts';
import { eventually } from './support/receiver.ts';
import { configureEventSender, startSender } from './support/sender.ts';

describe('the catch-up\'s look-back is a setting', function () {
  let t: TestDatabase;
  before(async () => {
    t = await createTestDatabase();
    await configureEventSender(t.db, 'http://127.0.0.1:9/x', ['Account/New']);
    await t.db.query(sql`UPDATE espf.handlers SET enabled_at = now() - interval '3 hours' WHERE name = 'EventSender'`);
    await t.db.query(sql`UPDATE espf.subscriptions SET created_at = now() - interval '3 hours' WHERE handler = 'EventSender'`);
    // main had processed every transaction committed before now, and served EventSender.
    await t.db.query(sql`INSERT INTO espf.instances (name, processed_until) VALUES ('main', now())`);
    await t.db.query(sql`INSERT INTO espf.handler_coverage (handler, served_by, served_since) VALUES ('EventSender', 'main', now() - interval '3 hours')`);
    // Transactions that started before that point and committed after it (nothing streamed them):
    // 30 minutes and 2 hours before.
    await t.db.query(sql`INSERT INTO espf.events (event_type, variables, created_at)
                         SELECT 'Account/New', jsonb_build_object('i_account', g), now() - interval '30 minutes' FROM generate_series(1, 3) g
                         UNION ALL
                         SELECT 'Account/New', jsonb_build_object('i_account', g), now() - interval '2 hours' FROM generate_series(4, 5) g`);
  });
  after(async () => { await t?.drop(); });

  const candidates = (lookBack: string | null) => t.db.tx(async (tx) => {
    if (lookBack !== null) await tx.query(sql`SELECT set_config('espf.catch_up_look_back', ${lookBack}, true)`);
    const [r] = await tx.query(sql`SELECT count(*)::int AS n FROM espf.catch_up_candidates('main', true) WHERE handler = 'EventSender'`);
    return r.n as number;
  });

  it('10 minutes by default: a transaction open 30 minutes across the point is not caught up', async () => {
    assert.equal(await candidates(null), 0);
    assert.equal(await candidates(''), 0, 'empty: the default');
  });

  it('longer when set: 1 hour catches the 30-minute transaction, 3 hours both', async () => {
    assert.equal(await candidates('1 hour'), 3);
    assert.equal(await candidates('3 hours'), 5);
  });

  it('a value that is not a duration of 0 or more is refused in one line (22023), naming the setting', async () => {
    for (const bad of ['soon', '-5 minutes']) {
      await assert.rejects(candidates(bad), (err: Error & { code?: string }) => {
        assert.equal(err.code, '22023');
        assert.match(err.message, new RegExp(`^espf\\.catch_up_look_back = ${bad}: not a duration of 0 or more`));
        return true;
      });
    }
  });

  it('set for the database (ALTER DATABASE … SET), the catch-up of espf run uses it', async () => {
    await t.db.query(sql`ALTER DATABASE ${sql.ident(t.name)} SET espf.catch_up_look_back = '1 hour'`);
    const db = connect({ connectionString: t.url, poolSize: 1 }); // new sessions read it
    try {
      const r = await catchUp({ db, instance: 'main', shard: WHOLE, slot: `espf_lookback_${process.pid}`, prepareSlot: async () => {}, log: pino({ level: 'silent' }) });
      assert.deepEqual(r.handlers, { EventSender: 3 });
    } finally {
      await db.dispose();
    }
  });
});

describe('the catch-up\'s exact bound (espf.open_since), where the database shows it', function () {
  this.timeout(60_000);
  const f = deliveryFixture({ types: ['Account/New'], sender: false });

  it('a transaction open across the point the instance had processed is caught up after a slot loss, with no look-back at all', async () => {
    const { t, rx } = f;
    // No look-back: only the exact bound can find the transaction below.
    await t.db.query(sql`ALTER DATABASE ${sql.ident(t.name)} SET espf.catch_up_look_back = '0'`);
    const db = connect({ connectionString: t.url, poolSize: 6 }); // new sessions read it
    const long = connect({ connectionString: t.url, poolSize: 1 });
    let run = await startSender(db, t.url);
    try {
      let release!: () => void;
      const gate = new Promise<void>((r) => { release = r; });
      let started!: Date;
      const open = new Promise<void>((opened) => {
        void long.tx(async (tx) => {
          [{ started }] = await tx.query(sql`SELECT now() AS started`);
          await tx.query(sql`INSERT INTO billing.account (id, i_customer, i_product) VALUES ('long-1', ${f.ids.i_customer}, ${f.ids.i_product})`);
          opened();
          await gate;
        });
      });
      await open;
      // The instance processes past the transaction's start while it stays open (heartbeat marks).
      const marks = await eventually(async () => {
        const [i] = await t.db.query(sql`SELECT processed_until, processed_from FROM espf.instances WHERE name = 'main'`);
        return i?.processed_until > started && i.processed_from !== null && i;
      }, 20_000, 'processed_until past the open transaction\'s start');
      assert.ok(marks.processed_from <= started, `the exact bound ${marks.processed_from.toISOString()} is at or before the open transaction's start ${started.toISOString()}`);
      await run.stop();

      // The slot goes; the long transaction commits while there is none.
      await t.db.query(sql`SELECT pg_drop_replication_slot(${run.sender.slot})`);
      release();
      await eventually(async () => (await t.db.query(sql`SELECT 1 FROM billing.account WHERE id = 'long-1'`)).length === 1, 10_000, 'the long transaction committed');

      run = await startSender(db, t.url);
      await rx.waitFor(() => rx.received.some((r) => r.json.variables.id === 'long-1'), 20_000, 'the event of the long transaction, caught up');
    } finally {
      await run.stop();
      await long.dispose();
      await db.dispose();
    }
  });
});
