import assert from 'node:assert/strict';
import { sql, type SQLQuery } from '@databases/pg';
import { createTestDatabase, type TestDatabase } from './support/database.ts';

// Dispatchers (README, "Dispatchers"): the views that fan a source
// event out, and espf.dispatch, which inserts what they produce.

interface Produced {
  event_type: string;
  i_env: number;
  variables: Record<string, unknown>;
}

const EVENT_TIME = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/;
const VIEWS = ['customer_to_accounts', 'product_to_accounts', 'service_attribute_to_owner'] as const;
type View = typeof VIEWS[number];

describe('dispatcher views and espf.dispatch', () => {
  let t: TestDatabase;
  const q = (query: SQLQuery) => t.db.query(query);
  const one = async (query: SQLQuery) => {
    const rows = await q(query);
    assert.equal(rows.length, 1, 'expected exactly one row');
    return rows[0];
  };

  // Two products, two customers. Customer c has four accounts:
  //   a1 individual, not blocked, product p1     a2 individual, blocked on its own, product p2
  //   a3 subordinate, not blocked, product p1    a4 subordinate, blocked on its own, product p2
  // Customer other has b1 (product p1) and b2 (product p2, subordinate).
  let p1: number, p2: number, c: number, other: number;
  let a1: number, a2: number, a3: number, a4: number, b1: number, b2: number;
  const env = new Map<number, number>(); // i_account -> i_env

  async function account(id: string, i_customer: number, i_product: number, i_env: number, balance_control: string, blocked: boolean) {
    const r = await one(sql`INSERT INTO billing.account (id, i_customer, i_product, i_env, balance_control, blocked, balance)
      VALUES (${id}, ${i_customer}, ${i_product}, ${i_env}, ${balance_control}, ${blocked}, 10) RETURNING i_account`);
    env.set(r.i_account, i_env);
    return r.i_account as number;
  }

  async function setEnabled(enabled: boolean, types: string[]): Promise<void> {
    await q(sql`UPDATE espf.event_types SET enabled = ${enabled} WHERE name = ANY (${types})`);
  }

  /** Runs `fn`, which must write exactly one event of `type`, and returns its i_event. */
  async function sourceEvent(type: string, fn: () => Promise<unknown>): Promise<number> {
    const { m } = await one(sql`SELECT coalesce(max(i_event), 0) AS m FROM espf.events`);
    await fn();
    const rows = await q(sql`SELECT i_event, event_type FROM espf.events WHERE i_event > ${m}`);
    assert.deepEqual(rows.map((r) => r.event_type), [type]);
    return rows[0]!.i_event;
  }

  async function fromView(view: View, source: number): Promise<Produced[]> {
    return q(sql`SELECT event_type, i_env, variables FROM ${sql.ident('espf', view)}
                 WHERE source_i_event = ${source} ORDER BY (variables ->> 'i_account')::bigint`);
  }

  /** The rows of `view` for `source` are `type` for exactly `accounts`, carrying `own` plus i_account and source_i_event. */
  async function assertFanOut(view: View, source: number, type: string, accounts: number[], own: Record<string, unknown>) {
    const rows = await fromView(view, source);
    assert.deepEqual(rows.map((r) => r.variables.i_account), [...accounts].sort((x, y) => x - y), `${view}: the accounts of ${type}`);
    for (const r of rows) {
      const i = r.variables.i_account as number;
      assert.equal(r.event_type, type);
      assert.equal(r.i_env, env.get(i), 'i_env is the account\'s');
      assert.deepEqual(r.variables, { ...own, i_account: i, source_i_event: source });
    }
    // No other dispatcher view maps this source event.
    for (const v of VIEWS.filter((x) => x !== view)) assert.deepEqual(await fromView(v, source), [], `${v} maps nothing`);
  }

  before(async () => {
    t = await createTestDatabase();
    p1 = (await one(sql`INSERT INTO billing.product (name, i_env) VALUES ('p1', 1) RETURNING i_product`)).i_product;
    p2 = (await one(sql`INSERT INTO billing.product (name, i_env) VALUES ('p2', 1) RETURNING i_product`)).i_product;
    c = (await one(sql`INSERT INTO billing.customer (name, i_env, credit_limit, balance) VALUES ('c', 2, 100, 0) RETURNING i_customer`)).i_customer;
    other = (await one(sql`INSERT INTO billing.customer (name, i_env, credit_limit, balance) VALUES ('other', 2, 100, 0) RETURNING i_customer`)).i_customer;
    a1 = await account('a1', c, p1, 11, 'individual', false);
    a2 = await account('a2', c, p2, 12, 'individual', true);
    a3 = await account('a3', c, p1, 13, 'subordinate', false);
    a4 = await account('a4', c, p2, 14, 'subordinate', true);
    b1 = await account('b1', other, p1, 15, 'individual', false);
    b2 = await account('b2', other, p2, 16, 'subordinate', false);
    await setEnabled(true, ['Customer/Blocked', 'Customer/Unblocked', 'Customer/ZeroAvailableFunds', 'Customer/AvailableFundsAppear',
      'Customer/Status/Suspend', 'Customer/Status/Unsuspend', 'ServiceAttribute/Changed']);
  });
  after(async () => { await t.drop(); });

  const updC = (set: SQLQuery) => () => q(sql`UPDATE billing.customer SET ${set} WHERE i_customer = ${c}`);
  const attr = (ownerType: string, ownerId: number, value: string) => () => q(sql`
    INSERT INTO billing.service_attribute_value (owner_type, owner_id, service, name, value)
    VALUES (${ownerType}, ${ownerId}, 'data', ${`apn-${value}`}, ${value})
    ON CONFLICT (owner_type, owner_id, service, name) DO UPDATE SET value = EXCLUDED.value`);

  describe('espf.customer_to_accounts (CustomerToAccountsDispatcher)', () => {
    it('Customer/Blocked, Customer/Unblocked -> the accounts not blocked on their own', async () => {
      const blocked = await sourceEvent('Customer/Blocked', updC(sql`blocked = true`));
      await assertFanOut('customer_to_accounts', blocked, 'Account/Blocked', [a1, a3], { i_customer: c });
      const unblocked = await sourceEvent('Customer/Unblocked', updC(sql`blocked = false`));
      await assertFanOut('customer_to_accounts', unblocked, 'Account/Unblocked', [a1, a3], { i_customer: c });
    });

    it('Customer/ZeroAvailableFunds, Customer/AvailableFundsAppear -> the subordinate accounts only', async () => {
      const zero = await sourceEvent('Customer/ZeroAvailableFunds', updC(sql`balance = 100`));
      await assertFanOut('customer_to_accounts', zero, 'Account/ZeroAvailableFunds', [a3, a4], { i_customer: c });
      const appear = await sourceEvent('Customer/AvailableFundsAppear', updC(sql`balance = 0`));
      await assertFanOut('customer_to_accounts', appear, 'Account/AvailableFundsAppear', [a3, a4], { i_customer: c });
    });

    it('Customer/Status/Suspend, Customer/Status/Unsuspend -> every account of the customer', async () => {
      const suspend = await sourceEvent('Customer/Status/Suspend', updC(sql`bill_status = 'suspended'`));
      await assertFanOut('customer_to_accounts', suspend, 'Account/Status/Suspend', [a1, a2, a3, a4], { i_customer: c });
      const unsuspend = await sourceEvent('Customer/Status/Unsuspend', updC(sql`bill_status = 'open'`));
      await assertFanOut('customer_to_accounts', unsuspend, 'Account/Status/Unsuspend', [a1, a2, a3, a4], { i_customer: c });
    });
  });

  describe('espf.service_attribute_to_owner (ServiceAttributeDispatcher)', () => {
    it('an account\'s attribute -> Account/ServiceAttribute/Changed with i_account', async () => {
      const e = await sourceEvent('ServiceAttribute/Changed', attr('account', a2, 'x1'));
      const rows = await fromView('service_attribute_to_owner', e);
      assert.deepEqual(rows, [{
        event_type: 'Account/ServiceAttribute/Changed', i_env: 12,
        variables: { owner_type: 'account', owner_id: a2, service: 'data', name: 'apn-x1', value: 'x1', prev_value: null, i_account: a2, source_i_event: e },
      }]);
      for (const v of ['customer_to_accounts', 'product_to_accounts'] as const) assert.deepEqual(await fromView(v, e), []);
    });

    it('a customer\'s attribute -> Customer/ServiceAttribute/Changed with i_customer', async () => {
      const e = await sourceEvent('ServiceAttribute/Changed', attr('customer', c, 'x2'));
      assert.deepEqual(await fromView('service_attribute_to_owner', e), [{
        event_type: 'Customer/ServiceAttribute/Changed', i_env: 2,
        variables: { owner_type: 'customer', owner_id: c, service: 'data', name: 'apn-x2', value: 'x2', prev_value: null, i_customer: c, source_i_event: e },
      }]);
    });

    it('a product\'s attribute -> Product/ServiceAttribute/Changed with i_product', async () => {
      const e = await sourceEvent('ServiceAttribute/Changed', attr('product', p1, 'x3'));
      assert.deepEqual(await fromView('service_attribute_to_owner', e), [{
        event_type: 'Product/ServiceAttribute/Changed', i_env: 1,
        variables: { owner_type: 'product', owner_id: p1, service: 'data', name: 'apn-x3', value: 'x3', prev_value: null, i_product: p1, source_i_event: e },
      }]);
    });
  });

  describe('espf.dispatch', () => {
    const dispatch = async (handler: string, events: number[]): Promise<number> =>
      (await one(sql`SELECT espf.dispatch(${handler}, ${events}::bigint[], 'main') AS n`)).n;
    const children = async (source: number) => q(sql`
      SELECT i_event, event_type, variables, source_i_event FROM espf.events
       WHERE source_i_event = ${source} ORDER BY (variables ->> 'i_account')::bigint, i_event`);

    function assertChild(e: { i_event: number; event_type: string; variables: Record<string, unknown>; source_i_event: number } | undefined,
      type: string, source: number, own: Record<string, unknown>) {
      assert.ok(e, `expected a ${type} child`);
      assert.equal(e.event_type, type);
      assert.equal(e.source_i_event, source, 'the source_i_event column');
      const { i_event, i_env, event_time, ...rest } = e.variables;
      assert.equal(i_event, e.i_event, 'variables.i_event is the child\'s own i_event');
      assert.ok(e.i_event > source, 'a child comes after its source');
      assert.equal(i_env, env.get(own.i_account as number) ?? i_env);
      assert.match(String(event_time), EVENT_TIME);
      assert.deepEqual(rest, { ...own, source_i_event: source });
    }

    it('inserts the children once, for enabled types only; a second call inserts nothing', async () => {
      await setEnabled(true, ['Account/Blocked']);
      const e = await sourceEvent('Customer/Blocked', updC(sql`blocked = true`));
      assert.equal(await dispatch('CustomerToAccountsDispatcher', [e]), 2);
      let rows = await children(e);
      assert.equal(rows.length, 2);
      assertChild(rows[0], 'Account/Blocked', e, { i_account: a1, i_customer: c });
      assertChild(rows[1], 'Account/Blocked', e, { i_account: a3, i_customer: c });
      assert.equal(rows[0]!.variables.i_env, 11);
      assert.equal(rows[1]!.variables.i_env, 13);
      assert.notEqual(rows[0]!.i_event, rows[1]!.i_event);

      assert.equal(await dispatch('CustomerToAccountsDispatcher', [e]), 0, 'a replay produces nothing');
      rows = await children(e);
      assert.equal(rows.length, 2, 'still two children');
      const claims = await q(sql`SELECT handler, state FROM espf.event_deliveries WHERE i_event = ${e}`);
      assert.deepEqual(claims, [{ handler: 'CustomerToAccountsDispatcher', state: 'DISPATCHED' }]);

      // Account/Unblocked is disabled: its source is consumed but produces nothing.
      const u = await sourceEvent('Customer/Unblocked', updC(sql`blocked = false`));
      assert.equal(await dispatch('CustomerToAccountsDispatcher', [u]), 0);
      assert.deepEqual(await children(u), []);
    });

    it('one batch of several sources: each source\'s children, only of enabled types', async () => {
      await setEnabled(true, ['Account/Status/Suspend', 'Account/ZeroAvailableFunds']);
      await setEnabled(false, ['Account/AvailableFundsAppear']);
      const zero = await sourceEvent('Customer/ZeroAvailableFunds', updC(sql`balance = 100`));
      const suspend = await sourceEvent('Customer/Status/Suspend', updC(sql`bill_status = 'suspended'`));
      const appear = await sourceEvent('Customer/AvailableFundsAppear', updC(sql`balance = 0`));
      assert.equal(await dispatch('CustomerToAccountsDispatcher', [zero, suspend, appear]), 2 + 4);
      assert.deepEqual((await children(zero)).map((r) => [r.event_type, r.variables.i_account]),
        [['Account/ZeroAvailableFunds', a3], ['Account/ZeroAvailableFunds', a4]]);
      assert.deepEqual((await children(suspend)).map((r) => r.variables.i_account), [a1, a2, a3, a4]);
      for (const r of await children(suspend)) {
        assertChild(r, 'Account/Status/Suspend', suspend, { i_account: r.variables.i_account, i_customer: c });
      }
      assert.deepEqual(await children(appear), []);
      assert.equal(await dispatch('CustomerToAccountsDispatcher', [zero, suspend, appear]), 0);
    });

    it('a dispatcher produces nothing from a type it does not consume', async () => {
      await setEnabled(true, ['Account/Status/Unsuspend']);
      const e = await sourceEvent('Customer/Status/Unsuspend', updC(sql`bill_status = 'open'`));
      assert.equal(await dispatch('ProductToAccountsDispatcher', [e]), 0);
      assert.equal(await dispatch('ServiceAttributeDispatcher', [e]), 0);
      assert.deepEqual(await children(e), []);
      assert.equal(await dispatch('CustomerToAccountsDispatcher', [e]), 4);
    });

    it('ServiceAttribute/Changed of a product -> Product/… -> Account/ServiceAttribute/Changed for every account on the product', async () => {
      await setEnabled(true, ['Product/ServiceAttribute/Changed', 'Account/ServiceAttribute/Changed']);
      const e = await sourceEvent('ServiceAttribute/Changed', attr('product', p1, 'y1'));
      assert.equal(await dispatch('ServiceAttributeDispatcher', [e]), 1);
      const [mid] = await children(e);
      const attrVars = { owner_type: 'product', owner_id: p1, service: 'data', name: 'apn-y1', value: 'y1', prev_value: null };
      assert.ok(mid);
      assert.equal(mid.event_type, 'Product/ServiceAttribute/Changed');
      assert.equal(mid.source_i_event, e);
      assert.equal(mid.variables.i_event, mid.i_event);
      assert.deepEqual(mid.variables, { ...attrVars, i_product: p1, source_i_event: e, i_event: mid.i_event, i_env: 1, event_time: mid.variables.event_time });
      await assertFanOut('product_to_accounts', mid.i_event, 'Account/ServiceAttribute/Changed', [a1, a3, b1], { ...attrVars, i_product: p1 });

      assert.equal(await dispatch('ProductToAccountsDispatcher', [mid.i_event]), 3);
      const rows = await children(mid.i_event);
      assert.deepEqual(rows.map((r) => r.variables.i_account), [a1, a3, b1]);
      for (const r of rows) {
        assertChild(r, 'Account/ServiceAttribute/Changed', mid.i_event, { ...attrVars, i_account: r.variables.i_account, i_product: p1 });
      }
      assert.equal(await dispatch('ProductToAccountsDispatcher', [mid.i_event]), 0);
    });

    it('ServiceAttribute/Changed of a customer -> Customer/… -> Account/ServiceAttribute/Changed for every account of the customer', async () => {
      await setEnabled(true, ['Customer/ServiceAttribute/Changed', 'Account/ServiceAttribute/Changed']);
      const e = await sourceEvent('ServiceAttribute/Changed', attr('customer', other, 'y2'));
      assert.equal(await dispatch('ServiceAttributeDispatcher', [e]), 1);
      const [mid] = await children(e);
      assert.ok(mid);
      assert.equal(mid.event_type, 'Customer/ServiceAttribute/Changed');
      assert.equal(mid.variables.i_customer, other);
      const attrVars = { owner_type: 'customer', owner_id: other, service: 'data', name: 'apn-y2', value: 'y2', prev_value: null };
      await assertFanOut('customer_to_accounts', mid.i_event, 'Account/ServiceAttribute/Changed', [b1, b2], { ...attrVars, i_customer: other });
      assert.equal(await dispatch('CustomerToAccountsDispatcher', [mid.i_event]), 2);
      const rows = await children(mid.i_event);
      assert.deepEqual(rows.map((r) => r.variables.i_account), [b1, b2]);
      for (const r of rows) {
        assertChild(r, 'Account/ServiceAttribute/Changed', mid.i_event, { ...attrVars, i_account: r.variables.i_account, i_customer: other });
      }
    });

    it('ServiceAttribute/Changed of an account -> Account/ServiceAttribute/Changed with i_account', async () => {
      await setEnabled(true, ['Account/ServiceAttribute/Changed']);
      const e = await sourceEvent('ServiceAttribute/Changed', attr('account', a4, 'y3'));
      assert.equal(await dispatch('ServiceAttributeDispatcher', [e]), 1);
      const rows = await children(e);
      assert.equal(rows.length, 1);
      assertChild(rows[0], 'Account/ServiceAttribute/Changed', e,
        { owner_type: 'account', owner_id: a4, service: 'data', name: 'apn-y3', value: 'y3', prev_value: null, i_account: a4 });
      assert.equal(rows[0]!.variables.i_env, 14);
    });
  });
});
