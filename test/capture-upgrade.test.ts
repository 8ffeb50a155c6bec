import assert from 'node:assert/strict';
import { sql } from '@databases/pg';
import type { Db } from '../src/db/connect.ts';
import { migrate } from '../src/migrate/migrate.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { seedCustomer } from './support/sender.ts';
import { releaseBeforeChangeOf, type ReleasedCode } from './support/upgrade.ts';

/**
 * espf migrate on a database of the release before the last change of the
 * capture predicates (sql/010_functions.sql; the built-in rules of
 * sql/100_builtin_rules.sql call them): the built-in rules whose definition
 * changed are compiled again, their triggers replaced in the one transaction of
 * sql/ under lock_timeout, while billing writes. No event is lost across the
 * swap, events captured before and after have the same shape, and the events
 * and deliveries already there stay as they were.
 */

/** A write of every kind the built-in account and customer rules capture. */
async function captureAll(db: Db, tag: string): Promise<void> {
  const ids = await seedCustomer(db, { name: `upgrade ${tag}` });
  const [debit] = await db.query(sql`INSERT INTO billing.account (id, i_customer, i_product, i_env, balance)
                                     VALUES (${`d-${tag}`}, ${ids.i_customer}, ${ids.i_product}, 2, 5) RETURNING i_account`);
  const [credit] = await db.query(sql`INSERT INTO billing.account (id, i_customer, i_product, billing_model, balance, credit_limit)
                                      VALUES (${`c-${tag}`}, ${ids.i_customer}, ${ids.i_product}, 'credit', 0, 10) RETURNING i_account`);
  for (const balance of [-1, 3]) await db.query(sql`UPDATE billing.account SET balance = ${balance} WHERE i_account = ${debit.i_account}`);
  for (const balance of [11, 9]) await db.query(sql`UPDATE billing.account SET balance = ${balance} WHERE i_account = ${credit.i_account}`);
  await db.query(sql`UPDATE billing.account SET blocked = true, role = 'data' WHERE i_account = ${debit.i_account}`);
  await db.query(sql`UPDATE billing.account SET password = 'p' WHERE i_account = ${credit.i_account}`);
  await db.query(sql`UPDATE billing.customer SET credit_limit = 100, balance = 50 WHERE i_customer = ${ids.i_customer}`);
  for (const balance of [120, 10]) await db.query(sql`UPDATE billing.customer SET balance = ${balance} WHERE i_customer = ${ids.i_customer}`);
  await db.query(sql`UPDATE billing.customer SET name = ${`renamed ${tag}`}, bill_status = 'suspended' WHERE i_customer = ${ids.i_customer}`);
  await db.query(sql`DELETE FROM billing.account WHERE i_account = ${credit.i_account}`);
}

/** Each event as its type followed by the sorted names of its variables, in capture order, after i_event `after`. */
async function shapes(db: Db, after: number): Promise<string[]> {
  const rows = await db.query(sql`SELECT event_type, variables FROM espf.events WHERE i_event > ${after} ORDER BY i_event`);
  return rows.map((r: { event_type: string; variables: Record<string, unknown> }) => [r.event_type, ...Object.keys(r.variables).sort()].join(' '));
}

async function lastEvent(db: Db): Promise<number> {
  const [r] = await db.query(sql`SELECT coalesce(max(i_event), 0)::bigint AS m FROM espf.events`);
  return Number(r.m);
}

async function triggerDefs(db: Db): Promise<Map<string, string>> {
  const rows = await db.query(sql`SELECT tgname, pg_get_triggerdef(oid) AS def FROM pg_trigger WHERE tgname LIKE 'espf\\_%' ORDER BY 1`);
  return new Map(rows.map((r: { tgname: string; def: string }) => [r.tgname, r.def]));
}

describe('capture: upgrade of the built-in rules while billing writes (sql/010_functions.sql, sql/100_builtin_rules.sql)', function () {
  this.timeout(180_000);
  let prev: ReleasedCode | null = null;
  let e: TestDatabase | undefined;
  after(async () => {
    await prev?.remove();
    await e?.drop();
  });

  it('replaces the changed triggers in one short transaction: no event lost, same shapes, events and deliveries kept', async function () {
    prev = await releaseBeforeChangeOf('sql/010_functions.sql');
    if (!prev) this.skip(); // not a git checkout
    e = await createTestDatabase({ empty: true });
    const { db } = e;
    await prev.migrate(db, { migrations: prev.migrations, repeatable: prev.repeatable });
    await db.query(sql`UPDATE espf.event_types SET enabled = true`);
    await captureAll(db, 'before');
    const before = await shapes(db, 0);
    assert.ok(before.length >= 20, JSON.stringify(before));
    // Deliveries of that release: every event recorded, half of them delivered.
    await db.query(sql`INSERT INTO espf.event_deliveries (i_event, handler, state, event_type, order_key, instance, commit_lsn, attempts)
                       SELECT i_event, 'EventSender', CASE WHEN i_event % 2 = 0 THEN 'DELIVERED' ELSE 'PENDING' END, event_type,
                              'e:' || i_event, 'main', '0/1'::pg_lsn, 1 FROM espf.events`);
    const kept = sql`SELECT to_jsonb(e) AS e, (SELECT to_jsonb(d) FROM espf.event_deliveries d WHERE d.i_event = e.i_event) AS d
                       FROM espf.events e ORDER BY i_event`;
    const stored = await db.query(kept);
    const defsBefore = await triggerDefs(db);
    const conditions = sql`SELECT name, espf.rule_trigger_name(name) AS tgname, condition FROM espf.event_rules WHERE builtin ORDER BY name`;
    const conditionsBefore = await db.query(conditions) as { name: string; tgname: string; condition: string | null }[];

    // Billing writes on their own connection during the migrate: each toggles an
    // account's block (Account/Blocked or Unblocked, and Subscriber/Updated) and
    // moves its balance across zero (Account/ZeroAvailableFunds or AvailableFundsAppear).
    const ids = await seedCustomer(db, { name: 'writer' });
    const [acct] = await db.query(sql`INSERT INTO billing.account (id, i_customer, i_product, balance) VALUES ('writer', ${ids.i_customer}, ${ids.i_product}, 1) RETURNING i_account`);
    const mark = await lastEvent(db);
    let writing = true;
    let toggles = 0;
    let crossings = 0;
    const writer = (async () => {
      while (writing) {
        await db.query(sql`UPDATE billing.account SET blocked = NOT blocked WHERE i_account = ${acct.i_account}`);
        toggles++;
        await db.query(sql`UPDATE billing.account SET balance = -balance WHERE i_account = ${acct.i_account}`);
        crossings++;
      }
    })();
    let result;
    try {
      result = await migrate(db);
    } finally {
      writing = false;
      await writer;
    }
    assert.deepEqual(result.keptRules, [], 'no built-in rule kept as changed');
    assert.ok(toggles > 0, 'billing wrote during the migrate');

    // Every built-in rule whose condition this release changed has its trigger
    // replaced (the same trigger, another WHEN); the funds and provisioned-column
    // rules call their predicates.
    const defsAfter = await triggerDefs(db);
    assert.deepEqual([...defsAfter.keys()], [...defsBefore.keys()], 'the same triggers');
    const conditionsAfter = new Map((await db.query(conditions) as { name: string; condition: string | null }[]).map((r) => [r.name, r.condition]));
    const changed = conditionsBefore.filter((r) => r.condition !== conditionsAfter.get(r.name));
    for (const r of changed) assert.notEqual(defsAfter.get(r.tgname), defsBefore.get(r.tgname), `${r.name}: its trigger replaced`);
    const predicates = [['Subscriber/Updated', 'espf.account_provisioning_changed(old.*, new.*)'],
                        ['Customer/Updated', 'espf.customer_provisioning_changed(old.*, new.*)'],
                        ['Account/ZeroAvailableFunds', 'espf.account_funds_lost(old.*, new.*)'],
                        ['Account/AvailableFundsAppear', 'espf.account_funds_lost(new.*, old.*)'],
                        ['Customer/ZeroAvailableFunds', 'espf.customer_funds_lost(old.*, new.*)'],
                        ['Customer/AvailableFundsAppear', 'espf.customer_funds_lost(new.*, old.*)']] as const;
    for (const [rule, predicate] of predicates) {
      const [{ tgname }] = await db.query(sql`SELECT espf.rule_trigger_name(${rule}) AS tgname`);
      assert.ok(defsAfter.get(tgname)!.includes(`WHEN (${predicate})`), defsAfter.get(tgname));
    }

    // Every write during the swap captured its events, in order.
    const during = await db.query(sql`SELECT event_type FROM espf.events WHERE i_event > ${mark} ORDER BY i_event`) as { event_type: string }[];
    const count = (...types: string[]) => during.filter((x) => types.includes(x.event_type)).length;
    assert.equal(count('Account/Blocked', 'Account/Unblocked'), toggles, JSON.stringify(during));
    assert.equal(count('Subscriber/Updated'), toggles);
    assert.equal(count('Account/ZeroAvailableFunds', 'Account/AvailableFundsAppear'), crossings);
    assert.equal(during.length, 2 * toggles + crossings);
    const blocks = during.filter((x) => x.event_type.startsWith('Account/') && x.event_type.includes('locked')).map((x) => x.event_type);
    assert.deepEqual(blocks, blocks.map((_, i) => (i % 2 === 0 ? 'Account/Blocked' : 'Account/Unblocked')), 'block and unblock alternate');
    const funds = during.filter((x) => x.event_type.includes('Funds')).map((x) => x.event_type);
    assert.deepEqual(funds, funds.map((_, i) => (i % 2 === 0 ? 'Account/ZeroAvailableFunds' : 'Account/AvailableFundsAppear')), 'funds disappear and appear alternate');

    // What was there stays; what is captured after has the shape of what was captured before.
    const last = Number((stored.at(-1) as { e: { i_event: number } }).e.i_event);
    assert.deepEqual((await db.query(kept)).filter((r: { e: { i_event: number } }) => r.e.i_event <= last), stored);
    const m = await lastEvent(db);
    await captureAll(db, 'after');
    assert.deepEqual(await shapes(db, m), before);
  });
});
