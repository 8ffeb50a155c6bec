import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { sql } from '@databases/pg';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { eventually, TestReceiver } from './support/receiver.ts';
import { configureEventSender, seedCustomer, startSender } from './support/sender.ts';

describe('espf run: delivery to an http handler', function () {
  let t: TestDatabase;
  let rx: TestReceiver;
  let run: Awaited<ReturnType<typeof startSender>>;
  let ids: { i_product: number; i_customer: number };

  before(async () => {
    t = await createTestDatabase();
    rx = await new TestReceiver().listen();
    await configureEventSender(t.db, rx.url, ['Account/New', 'Account/Blocked', 'Account/Unblocked']);
    ids = await seedCustomer(t.db);
    run = await startSender(t.db, t.url);
  });
  after(async () => {
    await run?.stop();
    await rx?.close();
    await t?.drop();
  });

  it('POSTs the EventSender body with Content-Type and Date', async () => {
    const [a] = await t.db.query(sql`INSERT INTO billing.account (id, i_customer, i_product) VALUES ('+15550001', ${ids.i_customer}, ${ids.i_product}) RETURNING i_account`);
    await rx.waitFor(() => rx.received.some((r) => r.json.variables.i_account === a.i_account), 10_000, 'Account/New');
    const r = rx.received.find((x) => x.json.variables.i_account === a.i_account)!;
    assert.equal(r.method, 'POST');
    assert.equal(r.path, '/events');
    assert.equal(r.headers['content-type'], 'application/json');
    assert.ok(!Number.isNaN(Date.parse(String(r.headers.date))));
    assert.equal(r.json.event_type, 'Account/New');
    const [e] = await t.db.query(sql`SELECT i_event, variables FROM espf.events WHERE event_type = 'Account/New'`);
    assert.deepEqual(r.json.variables, e.variables);
    assert.equal(typeof r.json.variables.i_event, 'number');
    assert.equal(r.headers.authorization, undefined);
  });

  it('records the delivery, the account status and a provisioning.log line', async () => {
    const [a] = await t.db.query(sql`SELECT i_account FROM billing.account WHERE id = '+15550001'`);
    await t.db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account = ${a.i_account}`);
    const d = await eventually(async () => {
      const [row] = await t.db.query(sql`
        SELECT d.* FROM espf.event_deliveries d JOIN espf.events e USING (i_event)
         WHERE e.event_type = 'Account/Blocked' AND d.state = 'DELIVERED'`);
      return row;
    }, 10_000, 'a DELIVERED row');
    assert.equal(d.handler, 'EventSender');
    assert.equal(d.attempts, 1);
    assert.equal(d.last_http_status, 200);
    assert.equal(d.i_account, a.i_account);
    const s = await eventually(async () => {
      const [row] = await t.db.query(sql`SELECT * FROM espf.account_provisioning_statuses WHERE i_account = ${a.i_account} AND handler = 'EventSender' AND event_type = 'Account/Blocked'`);
      return row;
    });
    assert.equal(s.status, 'OK');
    assert.equal(s.i_event, d.i_event);
    await eventually(async () => {
      await run.stop().catch(() => undefined);
      return true;
    });
    const lines = readFileSync(path.join(run.logDir, 'provisioning.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const line = lines.find((l) => l.i_event === d.i_event);
    assert.ok(line, 'a provisioning.log line for the event');
    assert.equal(line.handler, 'EventSender');
    assert.equal(line.status, 200);
    assert.equal(line.url, rx.url);
    assert.equal(line.i_account, a.i_account);
    assert.equal(typeof line.duration_ms, 'number');
    assert.ok(line.time);
  });
});

describe('espf run: auth methods', function () {
  let t: TestDatabase;
  let rx: TestReceiver;
  let run: Awaited<ReturnType<typeof startSender>>;
  let ids: { i_product: number; i_customer: number };
  before(async () => {
    t = await createTestDatabase();
    rx = await new TestReceiver().listen();
    await configureEventSender(t.db, rx.url, ['Account/New']);
    ids = await seedCustomer(t.db);
    run = await startSender(t.db, t.url);
  });
  after(async () => {
    await run?.stop();
    await rx?.close();
    await t?.drop();
  });

  async function newAccount(id: string) {
    const [a] = await t.db.query(sql`INSERT INTO billing.account (id, i_customer, i_product) VALUES (${id}, ${ids.i_customer}, ${ids.i_product}) RETURNING i_account`);
    await rx.waitFor(() => rx.received.some((r) => r.json.variables.i_account === a.i_account), 10_000, `account ${id}`);
    return rx.received.find((r) => r.json.variables.i_account === a.i_account)!;
  }

  it('Basic: base64(user:key) in the auth header', async () => {
    await t.db.query(sql`UPDATE espf.http_handlers SET auth_method = 'Basic', basic_auth_user = 'hss', basic_auth_key = 's3cret' WHERE handler = 'EventSender'`);
    await new Promise((r) => setTimeout(r, 400)); // two configuration polls
    const r = await newAccount('basic-1');
    assert.equal(r.headers.authorization, `Basic ${Buffer.from('hss:s3cret').toString('base64')}`);
  });

  it('Custom: <type> <credentials> in a custom header', async () => {
    await t.db.query(sql`UPDATE espf.http_handlers SET auth_method = 'Custom', auth_header = 'X-Auth', custom_auth_type = 'Token', custom_auth_credentials = 'abc123' WHERE handler = 'EventSender'`);
    await new Promise((r) => setTimeout(r, 400));
    const r = await newAccount('custom-1');
    assert.equal(r.headers['x-auth'], 'Token abc123');
  });

  it('Signature: draft-cavage hmac-sha1 over the Date header', async () => {
    await t.db.query(sql`UPDATE espf.http_handlers SET auth_method = 'Signature', auth_header = 'Authorization', signature_auth_key_id = 'key-1', signature_auth_key = 'k3y' WHERE handler = 'EventSender'`);
    await new Promise((r) => setTimeout(r, 400));
    const r = await newAccount('sig-1');
    const m = /^Signature keyId="([^"]+)",algorithm="hmac-sha1",headers="date",signature="([^"]+)"$/.exec(String(r.headers.authorization));
    assert.ok(m, `signature header form: ${r.headers.authorization}`);
    assert.equal(m[1], 'key-1');
    const expected = createHmac('sha1', 'k3y').update(`date: ${r.headers.date}`).digest('base64');
    assert.equal(m[2], expected);
  });
});
