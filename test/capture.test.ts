import assert from 'node:assert/strict';
import { sql, type SQLQuery } from '@databases/pg';
import { createTestDatabase, type TestDatabase } from './support/database.ts';

// Capture rules (README, "Event catalogue"; sql/1xx): every trigger-derived event type, its
// transition edges and the non-events next to them, read back from espf.events.

interface Event {
  i_event: number;
  event_type: string;
  variables: Record<string, unknown>;
}

const EVENT_TIME = /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/;

const PASSWORDS = ['pw-Zq81-initial', 'pw-Zq81-second', 'svc-Kx44-initial', 'svc-Kx44-second', 'pw-Zq81-other'];

describe('capture rules (espf.events written by triggers on billing tables)', () => {
  let t: TestDatabase;
  let triggerTypes: string[];

  const q = (query: SQLQuery) => t.db.query(query);
  const one = async (query: SQLQuery) => {
    const rows = await q(query);
    assert.equal(rows.length, 1, 'expected exactly one row');
    return rows[0];
  };

  /** Runs `fn` and returns the events it wrote, in i_event order. */
  async function captured(fn: () => Promise<unknown>): Promise<Event[]> {
    const { m } = await one(sql`SELECT coalesce(max(i_event), 0) AS m FROM espf.events`);
    await fn();
    return q(sql`SELECT i_event, event_type, variables FROM espf.events WHERE i_event > ${m} ORDER BY i_event`);
  }

  /** The event has exactly the type's own variables plus i_event, i_env and event_time. */
  function assertEvent(e: Event | undefined, type: string, own: Record<string, unknown>, iEnv = 1): void {
    assert.ok(e, `expected a ${type} event`);
    assert.equal(e.event_type, type);
    const { i_event, i_env, event_time, ...rest } = e.variables;
    assert.deepEqual(Object.keys(e.variables).sort(), [...Object.keys(own), 'i_event', 'i_env', 'event_time'].sort(),
      `${type}: variables are exactly its own plus the common ones`);
    assert.equal(i_event, e.i_event, `${type}: variables.i_event is the row's i_event`);
    assert.equal(i_env, iEnv, `${type}: i_env`);
    assert.match(String(event_time), EVENT_TIME);
    assert.equal(typeof event_time, 'string');
    assert.deepEqual(rest, own, `${type}: own variables`);
  }

  async function expectOne(fn: () => Promise<unknown>, type: string, own: Record<string, unknown>, iEnv = 1): Promise<Event> {
    const events = await captured(fn);
    assert.equal(events.length, 1, `expected one ${type} event, got ${JSON.stringify(events)}`);
    assertEvent(events[0], type, own, iEnv);
    return events[0]!;
  }

  async function expectNone(fn: () => Promise<unknown>, why: string): Promise<void> {
    const events = await captured(fn);
    assert.deepEqual(events, [], `no event expected: ${why}`);
  }

  async function setEnabled(enabled: boolean, types: string[]): Promise<void> {
    await q(sql`UPDATE espf.event_types SET enabled = ${enabled} WHERE name = ANY (${types})`);
  }

  let seq = 0;
  async function newProduct(iEnv = 1): Promise<number> {
    const r = await one(sql`INSERT INTO billing.product (name, i_env) VALUES (${`p${++seq}`}, ${iEnv}) RETURNING i_product`);
    return r.i_product;
  }
  async function newCustomer(cols: { i_env?: number; balance?: number; credit_limit?: number | null } = {}): Promise<number> {
    const r = await one(sql`INSERT INTO billing.customer (name, i_env, balance, credit_limit)
      VALUES (${`c${++seq}`}, ${cols.i_env ?? 1}, ${cols.balance ?? 0}, ${cols.credit_limit ?? null}) RETURNING i_customer`);
    return r.i_customer;
  }
  interface AccountCols {
    i_customer: number; i_product: number; i_env?: number; billing_model?: string; balance_control?: string;
    balance?: number; credit_limit?: number | null; blocked?: boolean; password?: string | null;
  }
  async function newAccount(c: AccountCols): Promise<number> {
    const r = await one(sql`INSERT INTO billing.account (id, i_customer, i_product, i_env, billing_model, balance_control, balance, credit_limit, blocked, password)
      VALUES (${`acc-${++seq}`}, ${c.i_customer}, ${c.i_product}, ${c.i_env ?? 1}, ${c.billing_model ?? 'debit'},
              ${c.balance_control ?? 'individual'}, ${c.balance ?? 0}, ${c.credit_limit ?? null}, ${c.blocked ?? false},
              ${c.password ?? null})
      RETURNING i_account`);
    return r.i_account;
  }
  const updAccount = (i: number, set: SQLQuery) => () => q(sql`UPDATE billing.account SET ${set} WHERE i_account = ${i}`);
  const updCustomer = (i: number, set: SQLQuery) => () => q(sql`UPDATE billing.customer SET ${set} WHERE i_customer = ${i}`);

  let product: number;
  let customer: number;

  before(async () => {
    t = await createTestDatabase();
    triggerTypes = (await q(sql`SELECT name FROM espf.event_types WHERE origin = 'trigger' ORDER BY name`)).map((r) => r.name);
    product = await newProduct();
    customer = await newCustomer();
    await setEnabled(true, triggerTypes);
  });
  after(async () => { await t.drop(); });

  it('knows every trigger-derived type of the catalogue, each with a capture trigger', async () => {
    assert.deepEqual(triggerTypes, [
      'Account/AvailableFundsAppear', 'Account/Blocked', 'Account/ID/Changed', 'Account/New',
      'Account/Password/Changed', 'Account/Product/Changed', 'Account/SIMCardAssignment',
      'Account/ServicePassword/Changed', 'Account/Unblocked', 'Account/ZeroAvailableFunds',
      'Customer/AvailableFundsAppear', 'Customer/Blocked', 'Customer/New', 'Customer/Status/Suspend',
      'Customer/Status/Unsuspend', 'Customer/Unblocked', 'Customer/ZeroAvailableFunds', 'ServiceAttribute/Changed',
    ]);
    const withTrigger = (await q(sql`SELECT DISTINCT event_type FROM espf.capture_triggers ORDER BY event_type`)).map((r) => r.event_type);
    assert.deepEqual(withTrigger, triggerTypes);
  });

  describe('Account/New and Customer/New', () => {
    it('Customer/New carries i_customer and the customer\'s i_env', async () => {
      let id = 0;
      const events = await captured(async () => { id = await newCustomer({ i_env: 3 }); });
      assert.equal(events.length, 1);
      assertEvent(events[0], 'Customer/New', { i_customer: id }, 3);
    });

    it('Account/New carries i_account, id, i_customer, i_product (and never the password)', async () => {
      let i = 0;
      const events = await captured(async () => {
        i = await newAccount({ i_customer: customer, i_product: product, i_env: 2, password: PASSWORDS[4] });
      });
      const { id } = await one(sql`SELECT id FROM billing.account WHERE i_account = ${i}`);
      assert.equal(events.length, 1);
      assertEvent(events[0], 'Account/New', { i_account: i, id, i_customer: customer, i_product: product }, 2);
    });
  });

  it('event_time is UTC whatever the session time zone', async () => {
    const rows = await t.db.tx(async (tx) => {
      await tx.query(sql`SET LOCAL TIME ZONE 'Pacific/Kiritimati'`); // UTC+14
      const [before] = await tx.query(sql`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS utc`);
      await tx.query(sql`INSERT INTO billing.customer (name) VALUES ('tz')`);
      const [after] = await tx.query(sql`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS utc`);
      const [e] = await tx.query(sql`SELECT variables ->> 'event_time' AS event_time FROM espf.events ORDER BY i_event DESC LIMIT 1`);
      return { before: before!.utc as string, after: after!.utc as string, eventTime: e!.event_time as string };
    });
    assert.match(rows.eventTime, EVENT_TIME);
    assert.ok(rows.before <= rows.eventTime && rows.eventTime <= rows.after, JSON.stringify(rows));
  });

  describe('Account updates', () => {
    let a: number;
    before(async () => { a = await newAccount({ i_customer: customer, i_product: product, i_env: 2, balance: 5 }); });

    it('Account/ID/Changed: id, prev_id; not when set to the same id', async () => {
      await expectOne(updAccount(a, sql`id = 'id-one'`), 'Account/ID/Changed', { i_account: a, id: 'id-one', prev_id: `acc-${seq}` }, 2);
      await expectOne(updAccount(a, sql`id = 'id-two'`), 'Account/ID/Changed', { i_account: a, id: 'id-two', prev_id: 'id-one' }, 2);
      await expectNone(updAccount(a, sql`id = 'id-two'`), 'id set to what it already was');
    });

    it('Account/Password/Changed: only i_account; null -> value, value -> value, value -> null; not the same value', async () => {
      await expectOne(updAccount(a, sql`password = ${PASSWORDS[0]}`), 'Account/Password/Changed', { i_account: a }, 2);
      await expectNone(updAccount(a, sql`password = ${PASSWORDS[0]}`), 'password set to what it already was');
      await expectOne(updAccount(a, sql`password = ${PASSWORDS[1]}`), 'Account/Password/Changed', { i_account: a }, 2);
      await expectOne(updAccount(a, sql`password = NULL`), 'Account/Password/Changed', { i_account: a }, 2);
      await expectNone(updAccount(a, sql`password = NULL`), 'null password set to null');
    });

    it('Account/ServicePassword/Changed: only i_account; not the same value', async () => {
      await expectOne(updAccount(a, sql`service_password = ${PASSWORDS[2]}`), 'Account/ServicePassword/Changed', { i_account: a }, 2);
      await expectNone(updAccount(a, sql`service_password = ${PASSWORDS[2]}`), 'service_password set to what it already was');
      await expectOne(updAccount(a, sql`service_password = ${PASSWORDS[3]}`), 'Account/ServicePassword/Changed', { i_account: a }, 2);
    });

    it('a password change does not also raise another type, and other columns raise nothing', async () => {
      const events = await captured(updAccount(a, sql`password = 'pw-Zq81-third', role = 'fixed', activation_date = '2020-01-01'`));
      assert.deepEqual(events.map((e) => e.event_type), ['Account/Password/Changed']);
      await expectNone(updAccount(a, sql`role = 'mobile', activation_date = '2021-01-01'`), 'columns no rule watches');
      PASSWORDS.push('pw-Zq81-third');
    });

    it('Account/Product/Changed: i_product, prev_i_product; not the same product', async () => {
      const p2 = await newProduct();
      await expectOne(updAccount(a, sql`i_product = ${p2}`), 'Account/Product/Changed', { i_account: a, i_product: p2, prev_i_product: product }, 2);
      await expectNone(updAccount(a, sql`i_product = ${p2}`), 'i_product set to what it already was');
    });

    it('Account/Blocked and Account/Unblocked: false->true, true->false; nothing for true->true or false->false', async () => {
      await expectNone(updAccount(a, sql`blocked = false`), 'false -> false');
      await expectOne(updAccount(a, sql`blocked = true`), 'Account/Blocked', { i_account: a }, 2);
      await expectNone(updAccount(a, sql`blocked = true`), 'true -> true');
      await expectOne(updAccount(a, sql`blocked = false`), 'Account/Unblocked', { i_account: a }, 2);
      await expectNone(updAccount(a, sql`blocked = false`), 'false -> false');
    });

    it('one UPDATE changing several watched columns raises one event per type', async () => {
      const events = await captured(updAccount(a, sql`id = 'id-three', blocked = true, service_password = 'svc-Kx44-third'`));
      PASSWORDS.push('svc-Kx44-third');
      assert.deepEqual(events.map((e) => e.event_type).sort(),
        ['Account/Blocked', 'Account/ID/Changed', 'Account/ServicePassword/Changed']);
    });
  });

  describe('Account available funds (individual accounts only)', () => {
    it('debit: balance crossing zero, both ways; nothing while funds stay > 0 or stay <= 0', async () => {
      const a = await newAccount({ i_customer: customer, i_product: product, billing_model: 'debit', balance: 10 });
      await expectNone(updAccount(a, sql`balance = 3`), 'funds stay > 0');
      await expectOne(updAccount(a, sql`balance = 0`), 'Account/ZeroAvailableFunds', { i_account: a });
      await expectNone(updAccount(a, sql`balance = -5`), 'funds stay <= 0');
      await expectNone(updAccount(a, sql`balance = 0`), 'funds stay <= 0 (back to exactly zero)');
      await expectOne(updAccount(a, sql`balance = 0.00001`), 'Account/AvailableFundsAppear', { i_account: a });
      await expectNone(updAccount(a, sql`balance = 100`), 'funds stay > 0');
      await expectOne(updAccount(a, sql`balance = -1`), 'Account/ZeroAvailableFunds', { i_account: a });
      await expectNone(updAccount(a, sql`credit_limit = 50`), 'a debit account\'s credit_limit does not count');
    });

    it('credit with credit_limit: credit_limit - balance crossing zero, by balance or by credit_limit', async () => {
      const a = await newAccount({ i_customer: customer, i_product: product, billing_model: 'credit', balance: 0, credit_limit: 100 });
      await expectNone(updAccount(a, sql`balance = 99`), 'funds 1 stay > 0');
      await expectOne(updAccount(a, sql`balance = 100`), 'Account/ZeroAvailableFunds', { i_account: a });
      await expectNone(updAccount(a, sql`balance = 150`), 'funds stay <= 0');
      await expectOne(updAccount(a, sql`balance = 50`), 'Account/AvailableFundsAppear', { i_account: a });
      await expectOne(updAccount(a, sql`credit_limit = 40`), 'Account/ZeroAvailableFunds', { i_account: a });
      await expectOne(updAccount(a, sql`credit_limit = 60`), 'Account/AvailableFundsAppear', { i_account: a });
    });

    it('credit without credit_limit (unlimited) never reaches zero; setting and clearing a limit can cross', async () => {
      const a = await newAccount({ i_customer: customer, i_product: product, billing_model: 'credit', balance: 0, credit_limit: null });
      await expectNone(updAccount(a, sql`balance = 1000000000`), 'unlimited funds stay > 0 whatever the balance');
      await expectNone(updAccount(a, sql`balance = -5`), 'unlimited funds stay > 0');
      await updAccount(a, sql`balance = 50`)();
      await expectOne(updAccount(a, sql`credit_limit = 10`), 'Account/ZeroAvailableFunds', { i_account: a });
      await expectOne(updAccount(a, sql`credit_limit = NULL`), 'Account/AvailableFundsAppear', { i_account: a });
    });

    it('a change of billing_model can cross zero', async () => {
      const a = await newAccount({ i_customer: customer, i_product: product, billing_model: 'debit', balance: 0 });
      await expectOne(updAccount(a, sql`billing_model = 'credit'`), 'Account/AvailableFundsAppear', { i_account: a });
      await expectOne(updAccount(a, sql`billing_model = 'debit'`), 'Account/ZeroAvailableFunds', { i_account: a });
    });

    it('subordinate accounts produce no Account funds events (their funds are the customer\'s)', async () => {
      const c = await newCustomer({ credit_limit: 100 });
      const d = await newAccount({ i_customer: c, i_product: product, billing_model: 'debit', balance_control: 'subordinate', balance: 10 });
      const k = await newAccount({ i_customer: c, i_product: product, billing_model: 'credit', balance_control: 'subordinate', balance: 0, credit_limit: 10 });
      await expectNone(updAccount(d, sql`balance = 0`), 'subordinate debit balance 10 -> 0');
      await expectNone(updAccount(d, sql`balance = 10`), 'subordinate debit balance 0 -> 10');
      await expectNone(updAccount(k, sql`balance = 10`), 'subordinate credit 10 -> 0');
      await expectNone(updAccount(k, sql`balance = 0`), 'subordinate credit 0 -> 10');
    });
  });

  describe('Customer updates', () => {
    let c: number;
    before(async () => { c = await newCustomer({ i_env: 4, credit_limit: 100, balance: 0 }); });

    it('Customer/Blocked and Customer/Unblocked: the edges only', async () => {
      await expectNone(updCustomer(c, sql`blocked = false`), 'false -> false');
      await expectOne(updCustomer(c, sql`blocked = true`), 'Customer/Blocked', { i_customer: c }, 4);
      await expectNone(updCustomer(c, sql`blocked = true`), 'true -> true');
      await expectOne(updCustomer(c, sql`blocked = false`), 'Customer/Unblocked', { i_customer: c }, 4);
    });

    it('Customer/ZeroAvailableFunds and Customer/AvailableFundsAppear: credit_limit - balance crossing zero', async () => {
      await expectNone(updCustomer(c, sql`balance = 99.99999`), 'funds stay > 0');
      await expectOne(updCustomer(c, sql`balance = 100`), 'Customer/ZeroAvailableFunds', { i_customer: c }, 4);
      await expectNone(updCustomer(c, sql`balance = 200`), 'funds stay <= 0');
      await expectOne(updCustomer(c, sql`balance = 50`), 'Customer/AvailableFundsAppear', { i_customer: c }, 4);
      await expectNone(updCustomer(c, sql`balance = 60`), 'funds stay > 0');
      await expectOne(updCustomer(c, sql`credit_limit = 60`), 'Customer/ZeroAvailableFunds', { i_customer: c }, 4);
      await expectOne(updCustomer(c, sql`credit_limit = NULL`), 'Customer/AvailableFundsAppear', { i_customer: c }, 4);
      await expectNone(updCustomer(c, sql`balance = 1000000000`), 'unlimited (null credit_limit) never reaches zero');
      await expectOne(updCustomer(c, sql`credit_limit = 0, balance = 0`), 'Customer/ZeroAvailableFunds', { i_customer: c }, 4);
      await expectOne(updCustomer(c, sql`balance = -1`), 'Customer/AvailableFundsAppear', { i_customer: c }, 4);
    });

    it('Customer/Status/Suspend and Customer/Status/Unsuspend: -> suspended, suspended -> open; closed -> open is not Unsuspend', async () => {
      await expectOne(updCustomer(c, sql`bill_status = 'suspended'`), 'Customer/Status/Suspend', { i_customer: c }, 4);
      await expectNone(updCustomer(c, sql`bill_status = 'suspended'`), 'suspended -> suspended');
      await expectOne(updCustomer(c, sql`bill_status = 'open'`), 'Customer/Status/Unsuspend', { i_customer: c }, 4);
      await expectNone(updCustomer(c, sql`bill_status = 'open'`), 'open -> open');
      await expectNone(updCustomer(c, sql`bill_status = 'closed'`), 'open -> closed');
      await expectNone(updCustomer(c, sql`bill_status = 'open'`), 'closed -> open is not Unsuspend');
      await updCustomer(c, sql`bill_status = 'closed'`)();
      await expectOne(updCustomer(c, sql`bill_status = 'suspended'`), 'Customer/Status/Suspend', { i_customer: c }, 4);
      await expectNone(updCustomer(c, sql`bill_status = 'closed'`), 'suspended -> closed');
    });
  });

  describe('Account/SIMCardAssignment', () => {
    let a: number;
    let b: number;
    const sim = (set: SQLQuery, imsi: string) => () => q(sql`UPDATE billing.sim_card SET ${set} WHERE imsi = ${imsi}`);
    before(async () => {
      a = await newAccount({ i_customer: customer, i_product: product, i_env: 5 });
      b = await newAccount({ i_customer: customer, i_product: product, i_env: 6 });
    });

    it('a card inserted in stock, or changed while in stock, raises nothing', async () => {
      await expectNone(() => q(sql`INSERT INTO billing.sim_card (imsi, iccid) VALUES ('001010000000001', 'icc-1')`), 'card in stock');
      await expectNone(sim(sql`imsi = '001010000000002'`, '001010000000001'), 'IMSI change of a card in stock');
    });

    it('assign: imsi now, prev_imsi null', async () => {
      await expectOne(sim(sql`i_account = ${a}`, '001010000000002'), 'Account/SIMCardAssignment',
        { i_account: a, imsi: '001010000000002', prev_imsi: null }, 5);
      await expectNone(sim(sql`i_account = ${a}`, '001010000000002'), 'assigned to the account it already had');
      await expectNone(sim(sql`iccid = 'icc-1b'`, '001010000000002'), 'iccid change');
    });

    it('IMSI change of an assigned card: imsi and prev_imsi', async () => {
      await expectOne(sim(sql`imsi = '001010000000003'`, '001010000000002'), 'Account/SIMCardAssignment',
        { i_account: a, imsi: '001010000000003', prev_imsi: '001010000000002' }, 5);
    });

    it('move between accounts: two events, the account that lost it first', async () => {
      const events = await captured(sim(sql`i_account = ${b}`, '001010000000003'));
      assert.equal(events.length, 2, JSON.stringify(events));
      assertEvent(events[0], 'Account/SIMCardAssignment', { i_account: a, imsi: null, prev_imsi: '001010000000003' }, 5);
      assertEvent(events[1], 'Account/SIMCardAssignment', { i_account: b, imsi: '001010000000003', prev_imsi: null }, 6);
    });

    it('remove: imsi null, prev_imsi the card\'s', async () => {
      await expectOne(sim(sql`i_account = NULL`, '001010000000003'), 'Account/SIMCardAssignment',
        { i_account: b, imsi: null, prev_imsi: '001010000000003' }, 6);
      await expectNone(sim(sql`i_account = NULL`, '001010000000003'), 'a card in stock stays in stock');
    });

    it('insert assigned, then delete it: assigned, then lost', async () => {
      await expectOne(() => q(sql`INSERT INTO billing.sim_card (imsi, i_account) VALUES ('001010000000009', ${a})`),
        'Account/SIMCardAssignment', { i_account: a, imsi: '001010000000009', prev_imsi: null }, 5);
      await expectOne(() => q(sql`DELETE FROM billing.sim_card WHERE imsi = '001010000000009'`),
        'Account/SIMCardAssignment', { i_account: a, imsi: null, prev_imsi: '001010000000009' }, 5);
      await expectNone(() => q(sql`DELETE FROM billing.sim_card WHERE imsi = '001010000000003'`), 'deleting a card in stock');
    });

    it('move with a new IMSI in the same UPDATE', async () => {
      await q(sql`INSERT INTO billing.sim_card (imsi, i_account) VALUES ('001010000000010', ${a})`);
      const events = await captured(sim(sql`i_account = ${b}, imsi = '001010000000011'`, '001010000000010'));
      assert.equal(events.length, 2, JSON.stringify(events));
      assertEvent(events[0], 'Account/SIMCardAssignment', { i_account: a, imsi: null, prev_imsi: '001010000000010' }, 5);
      assertEvent(events[1], 'Account/SIMCardAssignment', { i_account: b, imsi: '001010000000011', prev_imsi: null }, 6);
    });
  });

  describe('ServiceAttribute/Changed', () => {
    let acc: number;
    let cust: number;
    let prod: number;
    const attr = (ownerType: string, ownerId: number, value: string | null) => () => q(sql`
      INSERT INTO billing.service_attribute_value (owner_type, owner_id, service, name, value)
      VALUES (${ownerType}, ${ownerId}, 'voice', 'cfu', ${value})`);
    before(async () => {
      prod = await newProduct(7);
      cust = await newCustomer({ i_env: 8 });
      acc = await newAccount({ i_customer: cust, i_product: prod, i_env: 9 });
    });

    it('insert: value, prev_value null; i_env is the owner\'s', async () => {
      await expectOne(attr('account', acc, '+3531'), 'ServiceAttribute/Changed',
        { owner_type: 'account', owner_id: acc, service: 'voice', name: 'cfu', value: '+3531', prev_value: null }, 9);
      await expectOne(attr('customer', cust, 'on'), 'ServiceAttribute/Changed',
        { owner_type: 'customer', owner_id: cust, service: 'voice', name: 'cfu', value: 'on', prev_value: null }, 8);
      await expectOne(attr('product', prod, null), 'ServiceAttribute/Changed',
        { owner_type: 'product', owner_id: prod, service: 'voice', name: 'cfu', value: null, prev_value: null }, 7);
    });

    const upd = (ownerType: string, ownerId: number, set: SQLQuery) => () => q(sql`
      UPDATE billing.service_attribute_value SET ${set} WHERE owner_type = ${ownerType} AND owner_id = ${ownerId} AND service = 'voice' AND name = 'cfu'`);

    it('update: value, prev_value; nothing when set to the same value (null included)', async () => {
      await expectOne(upd('account', acc, sql`value = '+3532'`), 'ServiceAttribute/Changed',
        { owner_type: 'account', owner_id: acc, service: 'voice', name: 'cfu', value: '+3532', prev_value: '+3531' }, 9);
      await expectNone(upd('account', acc, sql`value = '+3532'`), 'value set to what it already was');
      await expectNone(upd('product', prod, sql`value = NULL`), 'null value set to null');
      await expectOne(upd('product', prod, sql`value = 'x'`), 'ServiceAttribute/Changed',
        { owner_type: 'product', owner_id: prod, service: 'voice', name: 'cfu', value: 'x', prev_value: null }, 7);
      await expectOne(upd('product', prod, sql`value = NULL`), 'ServiceAttribute/Changed',
        { owner_type: 'product', owner_id: prod, service: 'voice', name: 'cfu', value: null, prev_value: 'x' }, 7);
    });

    it('delete: value null, prev_value the old value', async () => {
      await expectOne(() => q(sql`DELETE FROM billing.service_attribute_value WHERE owner_type = 'customer' AND owner_id = ${cust}`),
        'ServiceAttribute/Changed',
        { owner_type: 'customer', owner_id: cust, service: 'voice', name: 'cfu', value: null, prev_value: 'on' }, 8);
    });

    it('a row moved to another owner: the old owner loses it (first), the new one gains it', async () => {
      const other = await newCustomer({ i_env: 10 });
      const events = await captured(upd('account', acc, sql`owner_type = 'customer', owner_id = ${other}`));
      assert.equal(events.length, 2, JSON.stringify(events));
      assertEvent(events[0], 'ServiceAttribute/Changed',
        { owner_type: 'account', owner_id: acc, service: 'voice', name: 'cfu', value: null, prev_value: '+3532' }, 9);
      assertEvent(events[1], 'ServiceAttribute/Changed',
        { owner_type: 'customer', owner_id: other, service: 'voice', name: 'cfu', value: '+3532', prev_value: null }, 10);
    });
  });

  describe('enabling and disabling types', () => {
    it('a disabled type is not captured at all; its triggers are off (espf.capture_triggers.active)', async () => {
      await setEnabled(false, triggerTypes);
      const active = await q(sql`SELECT trigger_name FROM espf.capture_triggers WHERE active`);
      assert.deepEqual(active, []);
      await expectNone(async () => {
        const c = await newCustomer({ credit_limit: 10 });
        const a = await newAccount({ i_customer: c, i_product: product, balance: 10, password: PASSWORDS[0] });
        await updAccount(a, sql`id = ${`moved-${a}`}, password = 'pw-Zq81-other', service_password = 'svc-Kx44-other', blocked = true, balance = 0`)();
        await updAccount(a, sql`blocked = false, balance = 5, i_product = ${await newProduct()}`)();
        await updCustomer(c, sql`blocked = true, balance = 10, bill_status = 'suspended'`)();
        await updCustomer(c, sql`blocked = false, balance = 0, bill_status = 'open'`)();
        await q(sql`INSERT INTO billing.sim_card (imsi, i_account) VALUES ('001010000000099', ${a})`);
        await q(sql`UPDATE billing.sim_card SET imsi = '001010000000098' WHERE imsi = '001010000000099'`);
        await q(sql`DELETE FROM billing.sim_card WHERE imsi = '001010000000098'`);
        await q(sql`INSERT INTO billing.service_attribute_value (owner_type, owner_id, service, name, value) VALUES ('account', ${a}, 's', 'n', 'v')`);
        await q(sql`UPDATE billing.service_attribute_value SET value = 'w' WHERE owner_id = ${a} AND owner_type = 'account'`);
        await q(sql`DELETE FROM billing.service_attribute_value WHERE owner_id = ${a} AND owner_type = 'account'`);
      }, 'every type is disabled');
      PASSWORDS.push('svc-Kx44-other');
    });

    it('toggling one type switches its triggers only, and capture with them', async () => {
      const activeTypes = async () => (await q(sql`SELECT DISTINCT event_type FROM espf.capture_triggers WHERE active ORDER BY 1`)).map((r) => r.event_type);
      await setEnabled(true, ['Account/Blocked']);
      assert.deepEqual(await activeTypes(), ['Account/Blocked']);
      const a = await newAccount({ i_customer: customer, i_product: product });
      const events = await captured(updAccount(a, sql`blocked = true, id = ${`toggled-${a}`}`));
      assert.deepEqual(events.map((e) => e.event_type), ['Account/Blocked']);
      await setEnabled(false, ['Account/Blocked']);
      assert.deepEqual(await activeTypes(), []);
      await expectNone(updAccount(a, sql`blocked = false`), 'Account/Unblocked is disabled');
      await updAccount(a, sql`blocked = true`)();
      await expectNone(updAccount(a, sql`blocked = false`), 'Account/Unblocked still disabled');
      await setEnabled(true, ['Account/Unblocked', 'ServiceAttribute/Changed']);
      assert.deepEqual(await activeTypes(), ['Account/Unblocked', 'ServiceAttribute/Changed']);
      const triggers = await q(sql`SELECT table_name::text AS t, active FROM espf.capture_triggers WHERE event_type = 'ServiceAttribute/Changed'`);
      assert.equal(triggers.length, 3, 'insert, update and delete triggers');
      assert.ok(triggers.every((r) => r.active && r.t === 'billing.service_attribute_value'));
      await q(sql`UPDATE billing.account SET blocked = true WHERE i_account = ${a}`);
      await expectOne(updAccount(a, sql`blocked = false`), 'Account/Unblocked', { i_account: a });
      await setEnabled(true, triggerTypes);
      assert.deepEqual(await activeTypes(), triggerTypes);
    });
  });

  describe('i_event for one account or customer increases in commit order', () => {
    it('increases along one account\'s history', async () => {
      const a = await newAccount({ i_customer: customer, i_product: product, balance: 1 });
      const events = await captured(async () => {
        await updAccount(a, sql`blocked = true`)();
        await q(sql`INSERT INTO billing.sim_card (imsi, i_account) VALUES ('001010000000200', ${a})`);
        await updAccount(a, sql`balance = 0`)();
        await updAccount(a, sql`blocked = false`)();
      });
      assert.deepEqual(events.map((e) => e.event_type),
        ['Account/Blocked', 'Account/SIMCardAssignment', 'Account/ZeroAvailableFunds', 'Account/Unblocked']);
      const ids = events.map((e) => e.i_event);
      assert.deepEqual(ids, [...ids].sort((x, y) => x - y));
    });

    /**
     * Transaction 1 writes one event of an entity and stays open; then a second
     * writer (autocommit) writes another event of the same entity. Whatever the
     * order the two commit in, the one committed later must have the larger i_event.
     */
    async function commitOrder(first: SQLQuery, firstType: string, second: SQLQuery, secondType: string): Promise<void> {
      const { m } = await one(sql`SELECT coalesce(max(i_event), 0) AS m FROM espf.events`);
      let release!: () => void;
      const gate = new Promise<void>((resolve) => { release = resolve; });
      let wrote!: () => void;
      const firstWrote = new Promise<void>((resolve) => { wrote = resolve; });
      const tx1 = t.db.tx(async (tx) => {
        await tx.query(first);
        wrote();
        await gate;
      });
      await firstWrote;
      let secondDone = false;
      const tx2 = t.db.query(second).finally(() => { secondDone = true; });
      // Wait (by polling the server, no timers) until the second writer either
      // finished or waits for a lock held by the first.
      let blocked = false;
      for (let i = 0; i < 5000 && !secondDone && !blocked; i++) {
        const [r] = await q(sql`SELECT count(*)::int AS n FROM pg_stat_activity
                                  WHERE datname = current_database() AND wait_event_type = 'Lock'`);
        blocked = r!.n > 0;
      }
      assert.ok(secondDone || blocked, 'the second writer neither finished nor waited for a lock');
      // If the second writer finished, it committed before the first; if it waits, it commits after.
      const secondCommittedFirst = secondDone;
      release();
      await tx1;
      await tx2;
      const events: Event[] = await q(sql`SELECT i_event, event_type, variables FROM espf.events WHERE i_event > ${m} ORDER BY i_event`);
      assert.deepEqual(events.map((e) => e.event_type).sort(), [firstType, secondType].sort());
      const e1 = events.find((e) => e.event_type === firstType)!;
      const e2 = events.find((e) => e.event_type === secondType)!;
      const [earlier, later] = secondCommittedFirst ? [e2, e1] : [e1, e2];
      assert.ok(later.i_event > earlier.i_event,
        `${earlier.event_type} (i_event ${earlier.i_event}) committed before ${later.event_type} (i_event ${later.i_event}): i_event must increase in commit order`);
    }

    it('a SIM assignment and a concurrent update of the same account commit in i_event order', async () => {
      const a = await newAccount({ i_customer: customer, i_product: product });
      await commitOrder(
        sql`INSERT INTO billing.sim_card (imsi, i_account) VALUES ('001010000000300', ${a})`, 'Account/SIMCardAssignment',
        sql`UPDATE billing.account SET blocked = true WHERE i_account = ${a}`, 'Account/Blocked');
    });

    it('an update of an account and a concurrent SIM assignment to it commit in i_event order', async () => {
      const a = await newAccount({ i_customer: customer, i_product: product });
      await commitOrder(
        sql`UPDATE billing.account SET blocked = true WHERE i_account = ${a}`, 'Account/Blocked',
        sql`INSERT INTO billing.sim_card (imsi, i_account) VALUES ('001010000000301', ${a})`, 'Account/SIMCardAssignment');
    });

    it('an update of a customer and a concurrent change of its service attribute commit in i_event order', async () => {
      const c = await newCustomer();
      await commitOrder(
        sql`UPDATE billing.customer SET blocked = true WHERE i_customer = ${c}`, 'Customer/Blocked',
        sql`INSERT INTO billing.service_attribute_value (owner_type, owner_id, service, name, value) VALUES ('customer', ${c}, 's', 'n', 'v')`, 'ServiceAttribute/Changed');
    });
  });

  describe('passwords', () => {
    it('no password or service password ever appears in any event', async () => {
      // Its own account, created with a password and changed in every way that makes an event
      // (the tests above add theirs to PASSWORDS; this test does not need them).
      const own = ['pw-Zq81-own-initial', 'pw-Zq81-own-second', 'svc-Kx44-own-initial', 'svc-Kx44-own-second'];
      PASSWORDS.push(...own);
      const a = await newAccount({ i_customer: customer, i_product: product, password: own[0] });
      await updAccount(a, sql`service_password = ${own[2]}`)();
      await updAccount(a, sql`password = ${own[1]}, service_password = ${own[3]}, blocked = true`)();
      const mine = await q(sql`SELECT event_type FROM espf.events WHERE (variables->>'i_account')::bigint = ${a} ORDER BY i_event`);
      const types = mine.map((r) => r.event_type as string);
      for (const type of ['Account/New', 'Account/Password/Changed', 'Account/ServicePassword/Changed', 'Account/Blocked']) {
        assert.ok(types.includes(type), `a ${type} event of the account was written (${types.join(', ')})`);
      }
      for (const pw of PASSWORDS) {
        const hits = await q(sql`SELECT i_event, event_type FROM espf.events WHERE variables::text LIKE ${`%${pw}%`}`);
        assert.deepEqual(hits, [], `password ${pw} found in events`);
      }
      // The passwords were really written to billing.account (so the search above can fail).
      const { k } = await one(sql`SELECT count(*)::int AS k FROM billing.account WHERE password IS NOT NULL OR service_password IS NOT NULL`);
      assert.ok(k > 0);
    });
  });
});
