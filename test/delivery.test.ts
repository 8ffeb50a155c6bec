import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { sql } from '@databases/pg';
import { deliveryFixture } from './support/fixture.ts';
import { eventually } from './support/receiver.ts';
import { configApplied } from './support/sender.ts';

describe('espf run: delivery to an http handler', function () {
  const f = deliveryFixture({ types: ['Account/New', 'Account/Blocked', 'Account/Unblocked'] });

  it('POSTs the EventSender body with Content-Type and Date', async () => {
    const [a] = await f.t.db.query(sql`INSERT INTO billing.account (id, i_customer, i_product) VALUES ('+15550001', ${f.ids.i_customer}, ${f.ids.i_product}) RETURNING i_account`);
    await f.rx.waitFor(() => f.rx.received.some((r) => r.json.variables.i_account === a.i_account), 10_000, 'Account/New');
    const r = f.rx.received.find((x) => x.json.variables.i_account === a.i_account)!;
    assert.equal(r.method, 'POST');
    assert.equal(r.path, '/events');
    assert.equal(r.headers['content-type'], 'application/json');
    assert.ok(!Number.isNaN(Date.parse(String(r.headers.date))));
    assert.equal(r.json.event_type, 'Account/New');
    const [e] = await f.t.db.query(sql`SELECT i_event, variables FROM espf.events WHERE event_type = 'Account/New'`);
    assert.deepEqual(r.json.variables, e.variables);
    assert.equal(typeof r.json.variables.i_event, 'number');
    assert.equal(r.headers.authorization, undefined);
  });

  it('records the delivery, the account status and a provisioning.log line', async () => {
    const [a] = await f.t.db.query(sql`SELECT i_account FROM billing.account WHERE id = '+15550001'`);
    await f.t.db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account = ${a.i_account}`);
    const d = await eventually(async () => {
      const [row] = await f.t.db.query(sql`
        SELECT d.* FROM espf.event_deliveries d JOIN espf.events e USING (i_event)
         WHERE e.event_type = 'Account/Blocked' AND d.state = 'DELIVERED'`);
      return row;
    }, 10_000, 'a DELIVERED row');
    assert.equal(d.handler, 'EventSender');
    assert.equal(d.attempts, 1);
    assert.equal(d.last_http_status, 200);
    assert.equal(d.i_account, a.i_account);
    const s = await eventually(async () => {
      const [row] = await f.t.db.query(sql`SELECT * FROM espf.account_provisioning_statuses WHERE i_account = ${a.i_account} AND handler = 'EventSender' AND event_type = 'Account/Blocked'`);
      return row;
    });
    assert.equal(s.status, 'OK');
    assert.equal(s.i_event, d.i_event);
    await eventually(async () => {
      await f.run.stop().catch(() => undefined);
      return true;
    });
    const lines = readFileSync(path.join(f.run.logDir, 'provisioning.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const line = lines.find((l) => l.i_event === d.i_event);
    assert.ok(line, 'a provisioning.log line for the event');
    assert.equal(line.handler, 'EventSender');
    assert.equal(line.status, 200);
    assert.equal(line.url, f.rx.url);
    assert.equal(line.i_account, a.i_account);
    assert.equal(typeof line.duration_ms, 'number');
    assert.ok(line.time);
  });
});

describe('espf run: auth methods', function () {
  const f = deliveryFixture({ types: ['Account/New'] });

  async function newAccount(id: string) {
    const [a] = await f.t.db.query(sql`INSERT INTO billing.account (id, i_customer, i_product) VALUES (${id}, ${f.ids.i_customer}, ${f.ids.i_product}) RETURNING i_account`);
    await f.rx.waitFor(() => f.rx.received.some((r) => r.json.variables.i_account === a.i_account), 10_000, `account ${id}`);
    return f.rx.received.find((r) => r.json.variables.i_account === a.i_account)!;
  }

  it('Basic: base64(user:key) in the auth header', async () => {
    await f.t.db.query(sql`UPDATE espf.http_handlers SET auth_method = 'Basic', basic_auth_user = 'hss', basic_auth_key = 's3cret' WHERE handler = 'EventSender'`);
    await configApplied(f.t.db, f.run.sender);
    const r = await newAccount('basic-1');
    assert.equal(r.headers.authorization, `Basic ${Buffer.from('hss:s3cret').toString('base64')}`);
  });

  it('Custom: <type> <credentials> in a custom header', async () => {
    await f.t.db.query(sql`UPDATE espf.http_handlers SET auth_method = 'Custom', auth_header = 'X-Auth', custom_auth_type = 'Token', custom_auth_credentials = 'abc123' WHERE handler = 'EventSender'`);
    await configApplied(f.t.db, f.run.sender);
    const r = await newAccount('custom-1');
    assert.equal(r.headers['x-auth'], 'Token abc123');
  });

  it('Signature: draft-cavage hmac-sha1 over the Date header', async () => {
    await f.t.db.query(sql`UPDATE espf.http_handlers SET auth_method = 'Signature', auth_header = 'Authorization', signature_auth_key_id = 'key-1', signature_auth_key = 'k3y' WHERE handler = 'EventSender'`);
    await configApplied(f.t.db, f.run.sender);
    const r = await newAccount('sig-1');
    const m = /^Signature keyId="([^"]+)",algorithm="hmac-sha1",headers="date",signature="([^"]+)"$/.exec(String(r.headers.authorization));
    assert.ok(m, `signature header form: ${r.headers.authorization}`);
    assert.equal(m[1], 'key-1');
    const expected = createHmac('sha1', 'k3y').update(`date: ${r.headers.date}`).digest('base64');
    assert.equal(m[2], expected);
  });
});
