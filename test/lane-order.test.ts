// Per-account order across the lanes of an http handler (docs/handlers.md,
// "Settings per environment"; src/delivery/lane-gate.ts): when an account's
// deliveries move to another environment's lane (its i_env changed, or a row
// of espf.http_handler_envs was added) while an earlier one still waits in the
// old lane, the later ones wait for it; other accounts go on. Real
// PostgreSQL, real receivers; the gate's pure tests are in
// test/unit/lane-gate.test.ts.
import assert from 'node:assert/strict';
import { sql } from '@databases/pg';
import { deliveryFixture } from './support/fixture.ts';
import { eventually, TestReceiver, type Received } from './support/receiver.ts';

const TYPES = ['Account/New', 'Account/Blocked'];

describe('per-account order across environment lanes', function () {
  this.timeout(60_000);
  // Retries every 0.05-0.2 s (test/support/sender.ts); no breaker opens on the 500s.
  const f = deliveryFixture({ types: TYPES, each: true, settings: { breaker_failures: 1000 } });
  let rx2: TestReceiver;
  beforeEach(async () => { rx2 = await new TestReceiver().listen(); });
  afterEach(async () => { await rx2.close(); });

  const of = (rx: TestReceiver, a: number, type: string, list: 'arrived' | 'received' = 'received'): Received[] =>
    rx[list].filter((r) => r.json.variables.i_account === a && r.json.event_type === type);

  async function envRow(env: number): Promise<void> {
    await f.t.db.query(sql`INSERT INTO espf.http_handler_envs (handler, i_env, url) VALUES ('EventSender', ${env}, ${[rx2.url]}::text[])`);
  }

  async function newAccount(id: string, env: number): Promise<number> {
    const [a] = await f.t.db.query(sql`INSERT INTO billing.account (id, i_customer, i_product, i_env) VALUES (${id}, ${f.ids.i_customer}, ${f.ids.i_product}, ${env}) RETURNING i_account`);
    return a.i_account;
  }

  /**
   * Account A of environment `env`: the default receiver answers 500 to its
   * first event (Account/New) until `letGo()`; returns once it has failed twice.
   */
  async function failingAccount(env: number): Promise<{ a: number; letGo: () => void }> {
    let failing = true;
    f.rx.respond = (r) => (failing && r.json.event_type === 'Account/New' && r.json.variables.id === 'order-a' ? { status: 500 } : { status: 200 });
    const a = await newAccount('order-a', env);
    await eventually(async () => of(f.rx, a, 'Account/New', 'arrived').length >= 2, 15_000, 'A\'s first event failing at the default receiver');
    return { a, letGo: () => { failing = false; } };
  }

  /** Account B of environment 2 is delivered at once while A's first event still fails; A's later event has not reached env 2's receiver. */
  async function othersGoOn(a: number): Promise<void> {
    const b = await newAccount('order-b', 2);
    await rx2.waitFor(() => of(rx2, b, 'Account/New').length === 1, 15_000, 'B\'s event at the receiver of env 2 while A waits');
    assert.equal(of(f.rx, a, 'Account/New').length, 0, 'A\'s first event is still failing');
    assert.deepEqual(of(rx2, a, 'Account/Blocked', 'arrived'), [], 'A\'s later event waits for its first');
  }

  /** A's later event reached env 2's receiver only after the default receiver answered 2xx to its first; every row DELIVERED. */
  async function inOrder(a: number): Promise<void> {
    const [first] = await eventually(async () => of(f.rx, a, 'Account/New').length > 0 && of(f.rx, a, 'Account/New'), 15_000, 'A\'s first event delivered');
    const [later] = await eventually(async () => of(rx2, a, 'Account/Blocked').length > 0 && of(rx2, a, 'Account/Blocked'), 15_000, 'A\'s later event at env 2\'s receiver');
    assert.ok(later!.at >= first!.at, `A's later event arrived ${first!.at - later!.at} ms before its first was delivered`);
    assert.deepEqual(of(rx2, a, 'Account/Blocked', 'arrived').length, 1, 'once, to its own lane\'s receiver');
    assert.deepEqual(of(f.rx, a, 'Account/Blocked', 'arrived'), [], 'never with the default row\'s settings');
    await eventually(async () => {
      const rows = await f.t.db.query(sql`SELECT state, count(*)::int AS n FROM espf.event_deliveries GROUP BY state`);
      return rows.length === 1 && rows[0].state === 'DELIVERED' && rows[0].n === 3;
    }, 15_000, 'every row of espf.event_deliveries DELIVERED (A\'s two, B\'s one)');
  }

  it('an account whose i_env changes while its event is retried in the default lane: its later event waits for it; others go on', async () => {
    await envRow(2);
    const { a, letGo } = await failingAccount(1);
    await f.t.db.query(sql`UPDATE billing.account SET i_env = 2, blocked = true WHERE i_account = ${a}`);
    await eventually(async () => (await f.t.db.query(sql`SELECT 1 FROM espf.event_deliveries d JOIN espf.events e USING (i_event) WHERE e.event_type = 'Account/Blocked' AND d.state = 'PENDING'`)).length === 1,
      15_000, 'A\'s later event recorded PENDING (the slot moves on)');
    await othersGoOn(a);
    letGo();
    await inOrder(a);
  });

  it('a row for the account\'s environment added while its event is retried with the default row\'s settings: the same', async () => {
    const { a, letGo } = await failingAccount(2);               // env 2 has no row yet: the default lane
    await envRow(2);
    await f.t.db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account = ${a}`);
    await othersGoOn(a);
    letGo();
    await inOrder(a);
  });

  it('coalescing reaches across: a newer event of a coalesced type in env 2 supersedes the older one waiting in the default lane', async () => {
    await f.t.db.query(sql`UPDATE espf.event_types SET coalesce = true WHERE name = 'Account/Blocked'`);
    await envRow(2);
    const { a, letGo } = await failingAccount(1);
    await f.t.db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account = ${a}`);    // behind the retry, default lane
    await f.t.db.query(sql`UPDATE billing.account SET blocked = false WHERE i_account = ${a}`);   // Account/Unblocked: not subscribed
    await f.t.db.query(sql`UPDATE billing.account SET i_env = 2, blocked = true WHERE i_account = ${a}`);
    const states = async () => (await f.t.db.query(sql`SELECT e.event_type, d.state FROM espf.event_deliveries d JOIN espf.events e USING (i_event) WHERE d.i_account = ${a} ORDER BY d.i_event`))
      .map((r) => `${r.event_type} ${r.state}`).join(', ');
    await eventually(async () => (await states()) === 'Account/New RETRY, Account/Blocked SUPERSEDED, Account/Blocked PENDING', 15_000, 'the older Blocked superseded');
    letGo();
    const [first] = await eventually(async () => of(f.rx, a, 'Account/New').length > 0 && of(f.rx, a, 'Account/New'), 15_000, 'A\'s first event delivered');
    const [later] = await eventually(async () => of(rx2, a, 'Account/Blocked').length > 0 && of(rx2, a, 'Account/Blocked'), 15_000, 'the newest Blocked at env 2\'s receiver');
    assert.ok(later!.at >= first!.at);
    await eventually(async () => (await states()) === 'Account/New DELIVERED, Account/Blocked SUPERSEDED, Account/Blocked DELIVERED', 15_000, 'the final rows');
    assert.deepEqual(of(f.rx, a, 'Account/Blocked', 'arrived'), [], 'the superseded one was never sent');
    assert.equal(of(rx2, a, 'Account/Blocked', 'arrived').length, 1);
  });

  it('across a restart of the sender: the waiting deliveries read back keep the order', async () => {
    await envRow(2);
    const { a, letGo } = await failingAccount(1);
    await f.t.db.query(sql`UPDATE billing.account SET i_env = 2, blocked = true WHERE i_account = ${a}`);
    await othersGoOn(a);
    await f.run.stop();
    const rows = await f.t.db.query(sql`SELECT e.event_type, d.state FROM espf.event_deliveries d JOIN espf.events e USING (i_event) WHERE d.i_account = ${a} ORDER BY d.i_event`);
    assert.deepEqual(rows.map((r) => `${r.event_type} ${r.state}`), ['Account/New RETRY', 'Account/Blocked PENDING']);
    const tried = of(f.rx, a, 'Account/New', 'arrived').length;
    f.run = await f.startSender();
    await eventually(async () => of(f.rx, a, 'Account/New', 'arrived').length > tried, 15_000, 'A\'s first event tried again after the restart');
    assert.deepEqual(of(rx2, a, 'Account/Blocked', 'arrived'), [], 'read back from the database, A\'s later event still waits for its first');
    letGo();
    await inOrder(a);
  });
});
