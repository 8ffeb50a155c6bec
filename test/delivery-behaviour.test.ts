import assert from 'node:assert/strict';
import { sql } from '@databases/pg';
import { deliveryFixture } from './support/fixture.ts';
import { TestReceiver } from './support/receiver.ts';
import { acknowledgedPastNow, addAccounts, configApplied, seedCustomer } from './support/sender.ts';

describe('espf run: dispatchers fan events out to accounts', function () {
  const f = deliveryFixture({
    types: ['Account/Blocked', 'Account/ZeroAvailableFunds', 'Account/ServiceAttribute/Changed', 'Account/Status/Suspend'],
    seed: false,
    setup: async ({ t }) => {
      await t.db.query(sql`UPDATE espf.event_types SET enabled = true WHERE name IN ('Customer/Blocked', 'Customer/ZeroAvailableFunds', 'Customer/Status/Suspend', 'ServiceAttribute/Changed', 'Product/ServiceAttribute/Changed', 'Customer/ServiceAttribute/Changed')`);
      await t.db.query(sql`UPDATE espf.handlers SET enabled = true WHERE kind = 'dispatcher'`);
      await t.db.query(sql`INSERT INTO espf.subscriptions SELECT handler, event_type FROM espf.dispatcher_rules`);
    },
  });

  it('customer block: Account/Blocked for every account not blocked on its own', async () => {
    const ids = await seedCustomer(f.t.db, { name: 'block' });
    const open = await addAccounts(f.t.db, ids, 3, 'blk-open-');
    const own = await addAccounts(f.t.db, ids, 1, 'blk-own-', { blocked: true });
    await f.t.db.query(sql`UPDATE billing.customer SET blocked = true WHERE i_customer = ${ids.i_customer}`);
    const got = () => f.rx.received.filter((r) => r.json.event_type === 'Account/Blocked' && r.json.variables.i_customer === ids.i_customer);
    await f.rx.waitFor(() => got().length >= 3, 10_000, 'three Account/Blocked');
    const [src] = await f.t.db.query(sql`SELECT i_event FROM espf.events WHERE event_type = 'Customer/Blocked' AND variables->>'i_customer' = ${String(ids.i_customer)}`);
    assert.deepEqual(got().map((r) => r.json.variables.i_account).sort(), [...open].sort());
    for (const r of got()) assert.equal(r.json.variables.source_i_event, src.i_event);
    assert.ok(!got().some((r) => own.includes(r.json.variables.i_account as number)));
    // The dispatcher ran once: a DISPATCHED row, no duplicate children.
    const [d] = await f.t.db.query(sql`SELECT state FROM espf.event_deliveries WHERE i_event = ${src.i_event} AND handler = 'CustomerToAccountsDispatcher'`);
    assert.equal(d.state, 'DISPATCHED');
    const [c] = await f.t.db.query(sql`SELECT count(*)::int AS n FROM espf.events WHERE source_i_event = ${src.i_event}`);
    assert.equal(c.n, 3);
  });

  it('customer funds: Account/ZeroAvailableFunds for subordinate accounts only', async () => {
    const ids = await seedCustomer(f.t.db, { name: 'funds' });
    await f.t.db.query(sql`UPDATE billing.customer SET credit_limit = 100 WHERE i_customer = ${ids.i_customer}`);
    const sub = await addAccounts(f.t.db, ids, 2, 'fund-sub-', { balance_control: 'subordinate' });
    await addAccounts(f.t.db, ids, 2, 'fund-ind-');
    await f.t.db.query(sql`UPDATE billing.customer SET balance = 150 WHERE i_customer = ${ids.i_customer}`);
    const got = () => f.rx.received.filter((r) => r.json.event_type === 'Account/ZeroAvailableFunds' && r.json.variables.i_customer === ids.i_customer);
    await f.rx.waitFor(() => got().length >= 2, 10_000, 'two Account/ZeroAvailableFunds');
    assert.deepEqual(got().map((r) => r.json.variables.i_account).sort(), [...sub].sort());
  });

  it('product attribute: ServiceAttribute/Changed → Product/… → Account/ServiceAttribute/Changed for every account on the product', async () => {
    const ids = await seedCustomer(f.t.db, { name: 'attr' });
    const accounts = await addAccounts(f.t.db, ids, 4, 'attr-');
    await f.t.db.query(sql`INSERT INTO billing.service_attribute_value (owner_type, owner_id, service, name, value) VALUES ('product', ${ids.i_product}, 'data', 'apn', 'internet')`);
    const got = () => f.rx.received.filter((r) => r.json.event_type === 'Account/ServiceAttribute/Changed' && r.json.variables.i_product === ids.i_product);
    await f.rx.waitFor(() => got().length >= 4, 10_000, 'four Account/ServiceAttribute/Changed');
    assert.deepEqual(got().map((r) => r.json.variables.i_account).sort(), [...accounts].sort());
    for (const r of got()) {
      assert.equal(r.json.variables.value, 'internet');
      assert.equal(r.json.variables.service, 'data');
    }
  });

  it('customer suspension: Account/Status/Suspend for every account', async () => {
    const ids = await seedCustomer(f.t.db, { name: 'susp' });
    const accounts = await addAccounts(f.t.db, ids, 2, 'susp-');
    await f.t.db.query(sql`UPDATE billing.customer SET bill_status = 'suspended' WHERE i_customer = ${ids.i_customer}`);
    const got = () => f.rx.received.filter((r) => r.json.event_type === 'Account/Status/Suspend' && r.json.variables.i_customer === ids.i_customer);
    await f.rx.waitFor(() => got().length >= 2, 10_000, 'Account/Status/Suspend');
    assert.deepEqual(got().map((r) => r.json.variables.i_account).sort(), [...accounts].sort());
  });
});

describe('espf run: modes, URLs and live configuration', function () {
  let rx2: TestReceiver;
  const f = deliveryFixture({ types: ['Account/New', 'Account/Blocked'], prepare: async () => { rx2 = await new TestReceiver().listen(); } });
  after(async () => {
    await rx2?.close();
  });
  afterEach(() => {
    f.rx.respond = () => ({ status: 200 });
    rx2.respond = () => ({ status: 200 });
  });

  async function setHandler(changes: string): Promise<void> {
    await f.t.db.query(sql`UPDATE espf.http_handlers SET ${sql.__dangerous__rawValue(changes)} WHERE handler = 'EventSender'`);
    await configApplied(f.t.db, f.run.sender);
  }

  it('token bucket: from the write on, at most its capacity plus token_rate per second, and throttled', async () => {
    const rate = 10;
    const burst = 15;
    const capacity = burst - rate; // the bucket holds token_burstiness − token_rate tokens (docs/handlers.md)
    await setHandler(`token_rate = ${rate}, token_burstiness = ${burst}`);
    const before = f.rx.received.length;
    // A bound that load cannot break: a request arrives after its token was
    // taken, and the bucket holds at most `capacity` tokens when the events are
    // written and gains `rate` per second after; a late sender only sends later.
    // The arrival times are the receiver's.
    const written = Date.now();
    const accounts = await addAccounts(f.t.db, f.ids, 40, 'tb-');
    await f.rx.waitFor(() => f.rx.received.length >= before + 40, 20_000, '40 events');
    const times = f.rx.received.slice(before).map((r) => r.at).sort((a, b) => a - b);
    assert.equal(times.length, accounts.length);
    times.forEach((at, i) => {
      const allowed = capacity + (rate * (at - written)) / 1000;
      assert.ok(i + 1 <= allowed, `request ${i + 1} arrived ${at - written} ms after the write: at most ${allowed.toFixed(1)} by then`);
    });
    // Throttled, not sent at once: the 40th request comes (40 − capacity) / rate seconds after the write at the earliest.
    const spanMs = times.at(-1)! - written;
    assert.ok(spanMs >= ((40 - capacity) / rate) * 1000, `40 requests within ${spanMs} ms of the write`);
    await setHandler('token_rate = 1000000, token_burstiness = 1000000');
  });

  it('sync mode: never two requests in flight', async () => {
    await setHandler('async_mode = false');
    f.rx.maxInFlight = 0;
    f.rx.respond = () => ({ status: 200, delayMs: 15 });
    const before = f.rx.received.length;
    await addAccounts(f.t.db, f.ids, 15, 'sync-');
    await f.rx.waitFor(() => f.rx.received.length >= before + 15, 15_000, '15 events');
    assert.equal(f.rx.maxInFlight, 1);
    await setHandler('async_mode = true');
  });

  it('async mode: requests go out concurrently', async () => {
    f.rx.maxInFlight = 0;
    f.rx.respond = () => ({ status: 200, delayMs: 50 });
    const before = f.rx.received.length;
    await addAccounts(f.t.db, f.ids, 20, 'async-');
    await f.rx.waitFor(() => f.rx.received.length >= before + 20, 15_000, '20 events');
    assert.ok(f.rx.maxInFlight > 1, `more than one request in flight, saw ${f.rx.maxInFlight}`);
  });

  it('every URL receives each event, the first before the second', async () => {
    await setHandler(`url = ARRAY['${f.rx.url}', '${rx2.url}']`);
    f.rx.respond = () => ({ status: 200, delayMs: 5 });
    const [a] = await addAccounts(f.t.db, f.ids, 5, 'two-urls-');
    await rx2.waitFor(() => rx2.received.filter((r) => String(r.json.variables.id ?? '').startsWith('two-urls-')).length >= 5, 10_000, 'five at the second URL');
    for (const second of rx2.received) {
      const first = f.rx.received.find((r) => r.json.variables.i_event === second.json.variables.i_event);
      assert.ok(first, `event ${second.json.variables.i_event} reached the first URL`);
      assert.ok(first.at <= second.at, 'the first URL before the second');
    }
    assert.ok(a);
  });

  it('a URL change applies to a running sender within 2 seconds', async () => {
    await f.t.db.query(sql`UPDATE espf.http_handlers SET url = ARRAY[${rx2.url}] WHERE handler = 'EventSender'`);
    const changed = Date.now();
    await configApplied(f.t.db, f.run.sender);
    const before1 = f.rx.received.length;
    const [acc] = await addAccounts(f.t.db, f.ids, 1, 'moved-');
    await rx2.waitFor(() => rx2.received.some((r) => r.json.variables.i_account === acc), 5000, 'the event at the new URL');
    assert.equal(f.rx.received.length, before1, 'nothing more at the old URL');
    assert.ok(Date.now() - changed < 10_000);
  });

  it('a handler disabled while running stops receiving; enabled again it resumes with what waited', async () => {
    await f.t.db.query(sql`UPDATE espf.http_handlers SET url = ARRAY[${f.rx.url}] WHERE handler = 'EventSender'`);
    await f.t.db.query(sql`UPDATE espf.handlers SET enabled = false WHERE name = 'EventSender'`);
    await configApplied(f.t.db, f.run.sender);
    const before = f.rx.received.length;
    await addAccounts(f.t.db, f.ids, 3, 'paused-');
    // While disabled, new events are not handed to it at all: once the slot is
    // acknowledged past them, a request sent for them would have arrived.
    await acknowledgedPastNow(f.t.db);
    assert.equal(f.rx.received.length, before);
    await f.t.db.query(sql`UPDATE espf.handlers SET enabled = true WHERE name = 'EventSender'`);
    await configApplied(f.t.db, f.run.sender);
    const [acc] = await addAccounts(f.t.db, f.ids, 1, 'resumed-');
    await f.rx.waitFor(() => f.rx.received.some((r) => r.json.variables.i_account === acc), 5000, 'an event after re-enabling');
  });
});
