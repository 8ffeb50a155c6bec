import assert from 'node:assert/strict';
import { sql } from '@databases/pg';
import type { Db } from '../src/db/connect.ts';
import { migrate } from '../src/migrate/migrate.ts';
import { createTestDatabase } from './support/database.ts';
import { seedCustomer } from './support/sender.ts';

/**
 * espf migrate brings every compiled rule function to what this release's
 * compiler writes (espf.refresh_rule_functions, sql/025_event_rules.sql and
 * sql/990_sync_capture.sql): a function compiled by an earlier release, or
 * changed by hand, is rewritten while billing writes, without a lock on the
 * billing tables, and events captured before and after have the same shape.
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

describe('capture: espf migrate rewrites compiled rule functions', function () {
  it('rewrites the functions that differ while billing writes; events before and after have the same shape', async function () {
    this.timeout(120_000);
    const t = await createTestDatabase();
    const db = t.db;
    try {
      await db.query(sql`UPDATE espf.event_types SET enabled = true`);
      await billingWrites(db, 'before');
      const before = await shapesAfter(db, 0);
      assert.ok(before.length >= 10, JSON.stringify(before));
      const stored = await db.query(sql`SELECT to_jsonb(e) AS e FROM espf.events e ORDER BY i_event`);
      const compiled = sql`SELECT f.proname, f.prosrc FROM pg_proc f
        WHERE f.pronamespace = 'espf'::regnamespace AND f.proname LIKE 'rule\\_%' AND f.prorettype = 'trigger'::regtype ORDER BY 1`;
      const fresh = await db.query(compiled);
      assert.ok(fresh.length > 20, `compiled rule functions: ${fresh.length}`);
      // As an earlier compiler (or a hand) left them: another body, still working.
      await db.query(sql`DO $x$ DECLARE f record; BEGIN
        FOR f IN SELECT proname, prosrc FROM pg_proc
                  WHERE pronamespace = 'espf'::regnamespace AND proname LIKE 'rule\\_%' AND prorettype = 'trigger'::regtype LOOP
          EXECUTE format('CREATE OR REPLACE FUNCTION espf.%I() RETURNS trigger LANGUAGE plpgsql AS %L', f.proname, E'\\n-- an earlier compiler' || f.prosrc);
        END LOOP; END $x$`);
      assert.notDeepEqual(await db.query(compiled), fresh);

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
      try {
        await migrate(db);
      } finally {
        writing = false;
        await writer;
      }
      assert.ok(writes > 0, 'billing wrote during the migrate');
      assert.deepEqual(await db.query(compiled), fresh, 'every compiled rule function as the compiler writes it');
      const [again] = await db.query(sql`SELECT espf.refresh_rule_functions() AS n`);
      assert.equal(again.n, 0, 'nothing left to rewrite');

      // Nothing captured before changed; what is captured after has the same shape.
      const last = Number((stored.at(-1) as { e: { i_event: number } }).e.i_event);
      assert.deepEqual(await db.query(sql`SELECT to_jsonb(e) AS e FROM espf.events e WHERE i_event <= ${last} ORDER BY i_event`), stored);
      const m = await maxEvent(db);
      await billingWrites(db, 'after');
      assert.deepEqual(await shapesAfter(db, m), before);
    } finally {
      await t.drop();
    }
  });
});
