import assert from 'node:assert/strict';
import { sql, type SQLQuery } from '@databases/pg';
import { createTestDatabase, type TestDatabase } from './support/database.ts';

/**
 * The types espf ships as built-in rules beyond the reference catalogue
 * (sql/100_builtin_rules.sql, disabled by default): each one's transition and
 * the non-events next to it.
 */
describe('built-in rule types: Subscriber/*, Customer/Created|Updated|Deleted, expiry, closure, name', () => {
  let t: TestDatabase;
  let product: number;
  const q = (query: SQLQuery) => t.db.query(query);
  const TYPES = ['Subscriber/Created', 'Subscriber/Updated', 'Subscriber/Deleted', 'Customer/Created', 'Customer/Updated',
    'Customer/Deleted', 'Account/ExpirationDate/Changed', 'Customer/Status/Closed', 'Customer/Name/Changed'];

  async function captured(fn: () => Promise<unknown>): Promise<{ event_type: string; variables: Record<string, unknown> }[]> {
    const [{ m }] = await q(sql`SELECT coalesce(max(i_event), 0) AS m FROM espf.events`);
    await fn();
    const rows = await q(sql`SELECT event_type, variables FROM espf.events WHERE i_event > ${m} ORDER BY i_event`);
    return rows.map((r: { event_type: string; variables: Record<string, unknown> }) => {
      const { i_event, event_time, ...own } = r.variables;
      assert.equal(typeof i_event, 'number');
      assert.match(String(event_time), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
      return { event_type: r.event_type, variables: own };
    });
  }
  const run = (query: SQLQuery) => () => q(query);
  async function customer(iEnv = 1): Promise<number> {
    const [c] = await q(sql`INSERT INTO billing.customer (name, i_env) VALUES ('c', ${iEnv}) RETURNING i_customer`);
    return c.i_customer;
  }
  async function account(c: number, id: string): Promise<number> {
    const [a] = await q(sql`INSERT INTO billing.account (id, i_customer, i_product, i_env) VALUES (${id}, ${c}, ${product}, 3) RETURNING i_account`);
    return a.i_account;
  }

  before(async () => {
    t = await createTestDatabase();
    const [p] = await q(sql`INSERT INTO billing.product (name) VALUES ('p') RETURNING i_product`);
    product = p.i_product;
  });
  after(async () => { await t.drop(); });

  it('ship disabled, with origin rule and built-in rules; nothing captured while disabled', async () => {
    const rows = await q(sql`SELECT name, enabled, origin FROM espf.event_types WHERE name = ANY(${TYPES}) ORDER BY name`);
    assert.equal(rows.length, TYPES.length);
    assert.ok(rows.every((r: { enabled: boolean; origin: string }) => !r.enabled && r.origin === 'rule'));
    const c = await customer();
    const events = await captured(async () => {
      const a = await account(c, 'off-1');
      await q(sql`UPDATE billing.account SET expiration_date = '2027-01-01', role = 'x' WHERE i_account = ${a}`);
      await q(sql`UPDATE billing.customer SET name = 'd', bill_status = 'closed' WHERE i_customer = ${c}`);
      await q(sql`DELETE FROM billing.account WHERE i_account = ${a}`);
    });
    assert.deepEqual(events, []);
    await q(sql`UPDATE espf.event_types SET enabled = true WHERE name = ANY(${TYPES})`);
  });

  describe('accounts', () => {
    let c: number;
    let a: number;
    before(async () => { c = await customer(); });

    it('Subscriber/Created: i_account', async () => {
      const ev = await captured(async () => { a = await account(c, 'sub-1'); });
      assert.deepEqual(ev, [{ event_type: 'Subscriber/Created', variables: { i_account: a, i_env: 3 } }]);
    });

    it('Subscriber/Updated on a provisioned column; never on balance, nor when nothing changed', async () => {
      for (const set of [sql`blocked = true`, sql`id = 'sub-1b'`, sql`i_product = i_product + 0, password = 'pw'`, sql`credit_limit = 5`]) {
        const ev = (await captured(run(sql`UPDATE billing.account SET ${set} WHERE i_account = ${a}`))).filter((e) => e.event_type === 'Subscriber/Updated');
        assert.deepEqual(ev, [{ event_type: 'Subscriber/Updated', variables: { i_account: a, i_env: 3 } }]);
      }
      assert.deepEqual(await captured(run(sql`UPDATE billing.account SET balance = balance + 10 WHERE i_account = ${a}`)), []);
      assert.deepEqual(await captured(run(sql`UPDATE billing.account SET blocked = true, role = role WHERE i_account = ${a}`)), []);
    });

    it('Account/ExpirationDate/Changed: expiration_date, prev_expiration_date; nothing when unchanged', async () => {
      const ev = await captured(run(sql`UPDATE billing.account SET expiration_date = '2027-03-31' WHERE i_account = ${a}`));
      assert.deepEqual(ev.filter((e) => e.event_type === 'Account/ExpirationDate/Changed'), [{
        event_type: 'Account/ExpirationDate/Changed',
        variables: { i_account: a, i_env: 3, expiration_date: '2027-03-31', prev_expiration_date: null },
      }]);
      const ev2 = await captured(run(sql`UPDATE billing.account SET expiration_date = NULL WHERE i_account = ${a}`));
      assert.deepEqual(ev2.find((e) => e.event_type === 'Account/ExpirationDate/Changed')?.variables,
        { i_account: a, i_env: 3, expiration_date: null, prev_expiration_date: '2027-03-31' });
      assert.deepEqual(await captured(run(sql`UPDATE billing.account SET expiration_date = NULL WHERE i_account = ${a}`)), []);
    });

    it('Subscriber/Deleted: i_account', async () => {
      const ev = await captured(run(sql`DELETE FROM billing.account WHERE i_account = ${a}`));
      assert.deepEqual(ev, [{ event_type: 'Subscriber/Deleted', variables: { i_account: a, i_env: 3 } }]);
    });
  });

  describe('customers', () => {
    let c: number;

    it('Customer/Created: i_customer', async () => {
      const ev = await captured(async () => { c = await customer(6); });
      assert.deepEqual(ev.map((e) => e.event_type), ['Customer/Created']);
      assert.deepEqual(ev[0]!.variables, { i_customer: c, i_env: 6 });
    });

    it('Customer/Name/Changed: name, prev_name (and Customer/Updated); nothing for the same name', async () => {
      const ev = await captured(run(sql`UPDATE billing.customer SET name = 'Acme Ltd' WHERE i_customer = ${c}`));
      assert.deepEqual(ev.map((e) => e.event_type).sort(), ['Customer/Name/Changed', 'Customer/Updated']);
      assert.deepEqual(ev.find((e) => e.event_type === 'Customer/Name/Changed')!.variables,
        { i_customer: c, i_env: 6, name: 'Acme Ltd', prev_name: 'c' });
      assert.deepEqual(await captured(run(sql`UPDATE billing.customer SET name = 'Acme Ltd' WHERE i_customer = ${c}`)), []);
    });

    it('Customer/Updated: never on balance', async () => {
      assert.deepEqual(await captured(run(sql`UPDATE billing.customer SET balance = balance + 1 WHERE i_customer = ${c}`)), []);
      const ev = await captured(run(sql`UPDATE billing.customer SET credit_limit = 100 WHERE i_customer = ${c}`));
      assert.deepEqual(ev, [{ event_type: 'Customer/Updated', variables: { i_customer: c, i_env: 6 } }]);
    });

    it('Customer/Status/Closed: -> closed only (not suspended, not closed again)', async () => {
      const types = async (status: string) => (await captured(run(sql`UPDATE billing.customer SET bill_status = ${status} WHERE i_customer = ${c}`)))
        .map((e) => e.event_type).filter((x) => x !== 'Customer/Updated');
      assert.deepEqual(await types('suspended'), []);
      assert.deepEqual(await types('closed'), ['Customer/Status/Closed']);
      assert.deepEqual(await types('closed'), []);
      assert.deepEqual(await types('open'), []);
    });

    it('Customer/Deleted: i_customer', async () => {
      const ev = await captured(run(sql`DELETE FROM billing.customer WHERE i_customer = ${c}`));
      assert.deepEqual(ev, [{ event_type: 'Customer/Deleted', variables: { i_customer: c, i_env: 6 } }]);
    });
  });
});
