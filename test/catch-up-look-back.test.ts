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
import { configureEventSender } from './support/sender.ts';

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
