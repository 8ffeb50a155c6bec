import assert from 'node:assert/strict';
import { sql } from '@databases/pg';
import type { Db } from '../src/db/connect.ts';
import { migrate } from '../src/migrate/migrate.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { seedCustomer } from './support/sender.ts';
import { databaseAtPreviousRelease } from './support/upgrade.ts';

/**
 * The generated rule functions write each event's shard_key themselves
 * (sql/025_event_rules.sql), and the outbox trigger events_shard_key fills it
 * only when a writer leaves it null (migrations/0025_capture_shard_key.sql):
 * the stored key is the one espf.shard_key computes, for every kind of rule.
 * An upgrade rewrites the rule functions an earlier release compiled, while
 * billing writes, and events captured before and after it have the same shape.
 */

/** One of each kind of built-in rule: jsonb variables (account, customer), jsonb[] (SIM card, service attribute, owner key). */
async function billingWrites(db: Db, tag: string): Promise<void> {
  const ids = await seedCustomer(db, { name: `cust ${tag}` });
  const [a] = await db.query(sql`INSERT INTO billing.account (id, i_customer, i_product, i_env, balance) VALUES (${`acc-${tag}`}, ${ids.i_customer}, ${ids.i_product}, 3, 5) RETURNING i_account`);
  await db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account = ${a.i_account}`);
  await db.query(sql`UPDATE billing.account SET balance = -1 WHERE i_account = ${a.i_account}`);
  await db.query(sql`UPDATE billing.customer SET name = ${`renamed ${tag}`} WHERE i_customer = ${ids.i_customer}`);
  await db.query(sql`INSERT INTO billing.sim_card (imsi, i_account) VALUES (${`imsi-${tag}`}, ${a.i_account})`);
  await db.query(sql`INSERT INTO billing.service_attribute_value (owner_type, owner_id, service, name, value)
                     VALUES ('account', ${a.i_account}, 'voice', 'cli', ${`cli-${tag}`}), ('product', ${ids.i_product}, 'voice', 'tier', 'gold')`);
  await db.query(sql`UPDATE billing.service_attribute_value SET owner_id = ${ids.i_customer}, owner_type = 'customer'
                     WHERE owner_type = 'account' AND owner_id = ${a.i_account}`);
}

/** Each event's type and the names of its variables, in capture order. */
async function shapesAfter(db: Db, after: number): Promise<{ event_type: string; keys: string[] }[]> {
  return db.query(sql`SELECT event_type, array(SELECT jsonb_object_keys(variables) ORDER BY 1) AS keys
                        FROM espf.events WHERE i_event > ${after} ORDER BY i_event`);
}

async function maxEvent(db: Db): Promise<number> {
  const [r] = await db.query(sql`SELECT coalesce(max(i_event), 0)::bigint AS m FROM espf.events`);
  return Number(r.m);
}

/** Events after `after` whose stored shard_key is not the one espf.shard_key computes (null included). */
async function wrongKeys(db: Db, after: number): Promise<unknown[]> {
  return db.query(sql`SELECT i_event, event_type, shard_key FROM espf.events
                       WHERE i_event > ${after} AND shard_key IS DISTINCT FROM espf.shard_key(variables, i_event)`);
}

describe('capture: the rule functions write shard_key', () => {
  let t: TestDatabase;
  before(async () => {
    t = await createTestDatabase();
    await t.db.query(sql`UPDATE espf.event_types SET enabled = true`);
  });
  after(async () => { await t.drop(); });

  it('every kind of rule stores the key espf.shard_key computes, without the outbox trigger', async () => {
    const m = await maxEvent(t.db);
    await t.db.tx(async (tx) => {
      // Without the outbox trigger, only the rule functions can set shard_key.
      await tx.query(sql`ALTER TABLE espf.events DISABLE TRIGGER events_shard_key`);
      await billingWrites(tx as unknown as Db, 'no-trigger');
      const shapes = await shapesAfter(tx as unknown as Db, m);
      assert.ok(shapes.length >= 10, JSON.stringify(shapes));
      for (const ty of ['Account/New', 'Account/Blocked', 'Account/ZeroAvailableFunds', 'Customer/Name/Changed', 'Account/SIMCardAssignment', 'ServiceAttribute/Changed']) {
        assert.ok(shapes.some((s) => s.event_type === ty), `${ty} captured: ${JSON.stringify(shapes)}`);
      }
      assert.deepEqual(await wrongKeys(tx as unknown as Db, m), []);
      await tx.query(sql`ALTER TABLE espf.events ENABLE TRIGGER events_shard_key`);
    });
  });

  it('the outbox trigger still keys rows a writer leaves without shard_key, and keeps a given one', async () => {
    const [r] = await t.db.query(sql`
      INSERT INTO espf.events (event_type, variables) VALUES ('Account/Blocked', '{"i_account": 77}')
      RETURNING shard_key = espf.shard_key(variables, i_event) AS same`);
    assert.equal(r.same, true);
    const [g] = await t.db.query(sql`
      INSERT INTO espf.events (event_type, variables, shard_key) VALUES ('Account/Blocked', '{"i_account": 77}', 5) RETURNING shard_key`);
    assert.equal(g.shard_key, 5);
  });
});

describe('capture: upgrade from the previous release (migrations/0025_capture_shard_key.sql)', function () {
  it('rewrites the rule functions while billing writes; events before and after have the same shape and key', async function () {
    this.timeout(120_000);
    const old = await databaseAtPreviousRelease('0025_capture_shard_key.sql');
    if (!old) this.skip(); // not a git checkout
    const { db } = old!;
    try {
      await db.query(sql`UPDATE espf.event_types SET enabled = true`);
      await billingWrites(db, 'before');
      const before = await shapesAfter(db, 0);
      const stored = await db.query(sql`SELECT to_jsonb(e) AS e FROM espf.events e ORDER BY i_event`);
      const [{ n: oldFunctions }] = await db.query(sql`SELECT count(*)::int AS n FROM pg_proc
        WHERE pronamespace = 'espf'::regnamespace AND proname LIKE 'rule\\_%' AND prorettype = 'trigger'::regtype AND prosrc NOT LIKE '%shard_key%'`);
      assert.ok(oldFunctions > 20, `the previous release compiled rule functions without shard_key (${oldFunctions})`);

      // Billing writes go on during the migrate, in short transactions on their own connection.
      const [acct] = await db.query(sql`SELECT min(i_account)::bigint AS a FROM billing.account`);
      let writing = true;
      let writes = 0;
      const writer = (async () => {
        while (writing) {
          await db.query(sql`UPDATE billing.account SET balance = balance + 1 WHERE i_account = ${acct.a}`);
          writes++;
        }
      })();
      let r;
      try {
        r = await migrate(db);
      } finally {
        writing = false;
        await writer;
      }
      assert.ok(r.applied.includes('0025_capture_shard_key.sql'), JSON.stringify(r.applied));
      assert.ok(writes > 0, 'billing wrote during the migrate');
      const [{ n: left }] = await db.query(sql`SELECT count(*)::int AS n FROM pg_proc
        WHERE pronamespace = 'espf'::regnamespace AND proname LIKE 'rule\\_%' AND prorettype = 'trigger'::regtype AND prosrc NOT LIKE '%shard_key%'`);
      assert.equal(left, 0, 'every compiled rule function rewritten');

      // Nothing captured before the upgrade changed; what is captured after has the same shape.
      assert.deepEqual(await db.query(sql`SELECT to_jsonb(e) AS e FROM espf.events e WHERE i_event <= ${Number((stored.at(-1) as { e: { i_event: number } }).e.i_event)} ORDER BY i_event`), stored);
      const m = await maxEvent(db);
      await billingWrites(db, 'after');
      assert.deepEqual(await shapesAfter(db, m), before);
      assert.deepEqual(await wrongKeys(db, m), []);
    } finally {
      await old!.dispose();
    }
  });
});
