import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { sql } from '@databases/pg';
import { provisioningLog } from '../src/log/logger.ts';
import { startHttpServer } from '../src/run/http-server.ts';
import { Sender } from '../src/run/sender.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { seedCustomer } from './support/sender.ts';

const TOKEN = 'test-token-0123456789abcdef';

describe('status API: POST /espf/v1/account/i/{i_account}/status', function () {
  let t: TestDatabase;
  let server: Awaited<ReturnType<typeof startHttpServer>>;
  let iAccount: number;
  let base: string;

  before(async () => {
    t = await createTestDatabase();
    const ids = await seedCustomer(t.db);
    const [a] = await t.db.query(sql`INSERT INTO billing.account (id, i_customer, i_product) VALUES ('+15557000', ${ids.i_customer}, ${ids.i_product}) RETURNING i_account`);
    iAccount = a.i_account;
    await t.db.query(sql`UPDATE espf.status_api SET token = ${TOKEN}, enabled = true`);
    const log = pino({ level: process.env.ESPF_TEST_LOG ?? 'silent' });
    // The status API does not need the stream: a sender that is not started is enough.
    const sender = new Sender({ db: t.db, url: t.url, instance: 'main', log, plog: provisioningLog(mkdtempSync(path.join(os.tmpdir(), 'espf-log-'))) });
    server = await startHttpServer({ sender, db: t.db, log, port: 0, host: '127.0.0.1' });
    base = `http://127.0.0.1:${server.port}`;
  });
  after(async () => {
    await server?.close();
    await t?.drop();
  });

  function post(account: string | number, body: unknown, opts: { token?: string | null; raw?: boolean; auth?: string } = {}) {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (opts.auth !== undefined) headers.authorization = opts.auth;
    else if (opts.token !== null) headers.authorization = `Bearer ${opts.token ?? TOKEN}`;
    return fetch(`${base}/espf/v1/account/i/${account}/status`, {
      method: 'POST', headers, body: opts.raw ? String(body) : JSON.stringify(body),
    });
  }

  async function statuses(): Promise<unknown[]> {
    return t.db.query(sql`SELECT * FROM espf.account_provisioning_statuses ORDER BY i_account, handler`);
  }

  it('stores a status for an account and a group, and replaces it on the next report', async () => {
    const r1 = await post(iAccount, { status: 'IN_PROGRESS', group: 'HSS', message: 'queued on the HSS' });
    assert.equal(r1.status, 200);
    const b1 = await r1.json() as Record<string, unknown>;
    assert.equal(b1.i_account, iAccount);
    assert.equal(b1.group, 'HSS');
    assert.equal(b1.status, 'IN_PROGRESS');
    const [row1] = await t.db.query(sql`SELECT * FROM espf.account_provisioning_statuses WHERE i_account = ${iAccount} AND handler = 'HSS'`);
    assert.equal(row1.status, 'IN_PROGRESS');
    assert.equal(row1.message, 'queued on the HSS');

    const r2 = await post(iAccount, { status: 'OK', group: 'HSS' });
    assert.equal(r2.status, 200);
    const rows = await t.db.query(sql`SELECT * FROM espf.account_provisioning_statuses WHERE i_account = ${iAccount} AND handler = 'HSS'`);
    assert.equal(rows.length, 1);
    assert.equal(rows[0].status, 'OK');
    assert.equal(rows[0].message, null);
    assert.ok(rows[0].updated_at >= row1.updated_at);
  });

  it("keeps espf's own i_event and event_type of the row it updates; a message of exactly 4000 characters is fine", async () => {
    await t.db.query(sql`
      INSERT INTO espf.account_provisioning_statuses (i_account, handler, status, i_event, event_type, attempts, message)
      VALUES (${iAccount}, 'EventSender', 'OK', 42, 'Account/New', 1, 'HTTP 200')`);
    const message = 'é'.repeat(4000);
    const r = await post(iAccount, { status: 'FAILED', group: 'EventSender', message });
    assert.equal(r.status, 200);
    const [row] = await t.db.query(sql`SELECT * FROM espf.account_provisioning_statuses WHERE i_account = ${iAccount} AND handler = 'EventSender'`);
    assert.equal(row.status, 'FAILED');
    assert.equal(row.i_event, 42);
    assert.equal(row.event_type, 'Account/New');
    assert.equal(row.attempts, 1);
    assert.equal(row.message, message);
  });

  it('refuses bad requests with a 4xx and a JSON reason, and changes nothing', async () => {
    const before = await statuses();
    const cases: [string, () => Promise<Response>, number, RegExp][] = [
      ['no token', () => post(iAccount, { status: 'OK', group: 'HSS' }, { token: null }), 401, /missing Authorization/],
      ['wrong token', () => post(iAccount, { status: 'OK', group: 'HSS' }, { token: 'x'.repeat(26) }), 401, /wrong bearer token/],
      ['not a bearer token', () => post(iAccount, { status: 'OK', group: 'HSS' }, { auth: `Basic ${Buffer.from(`a:${TOKEN}`).toString('base64')}` }), 401, /Bearer/],
      ['unknown status', () => post(iAccount, { status: 'DONE', group: 'HSS' }), 400, /status "DONE" is not one of OK, IN_PROGRESS, RETRY, FAILED/],
      ['lower-case status', () => post(iAccount, { status: 'ok', group: 'HSS' }), 400, /not one of/],
      ['missing status', () => post(iAccount, { group: 'HSS' }), 400, /status is missing/],
      ['missing group', () => post(iAccount, { status: 'OK' }), 400, /group is missing/],
      ['empty group', () => post(iAccount, { status: 'OK', group: '  ' }), 400, /group must be a non-empty string/],
      ['group not a string', () => post(iAccount, { status: 'OK', group: 7 }), 400, /group must be a non-empty string/],
      ['message too long', () => post(iAccount, { status: 'OK', group: 'HSS', message: 'x'.repeat(4001) }), 400, /message is 4001 characters long; at most 4000/],
      ['message not a string', () => post(iAccount, { status: 'OK', group: 'HSS', message: { a: 1 } }), 400, /message must be a string/],
      ['unknown field', () => post(iAccount, { status: 'OK', group: 'HSS', msg: 'typo' }), 400, /unknown field: "msg"/],
      ['body not an object', () => post(iAccount, [{ status: 'OK', group: 'HSS' }]), 400, /must be a JSON object/],
      ['body not JSON', () => post(iAccount, '{"status": "OK", group', { raw: true }), 400, /not JSON/],
      ['empty body', () => post(iAccount, '', { raw: true }), 400, /not JSON/],
      ['i_account not a number', () => post('abc', { status: 'OK', group: 'HSS' }), 400, /i_account "abc" is not a number/],
      ['i_account negative', () => post('-5', { status: 'OK', group: 'HSS' }), 400, /is not a number/],
      ['i_account too large', () => post('99999999999999999999', { status: 'OK', group: 'HSS' }), 400, /is not a number/],
      ['account does not exist', () => post(iAccount + 1000, { status: 'OK', group: 'HSS' }), 404, /does not exist/],
      ['body over 64 KiB', () => post(iAccount, { status: 'OK', group: 'HSS', message: 'x'.repeat(70_000) }), 413, /larger than 65536 bytes/],
      ['GET', () => fetch(`${base}/espf/v1/account/i/${iAccount}/status`, { headers: { authorization: `Bearer ${TOKEN}` } }), 405, /use POST/],
      ['unknown path', () => fetch(`${base}/espf/v1/accounts/${iAccount}`, { method: 'POST' }), 404, /not found/],
    ];
    for (const [what, call, status, reason] of cases) {
      const res = await call();
      assert.equal(res.status, status, what);
      assert.match(String(res.headers.get('content-type')), /application\/json/, what);
      const body = await res.json() as { error?: unknown };
      assert.equal(typeof body.error, 'string', what);
      assert.match(String(body.error), reason, what);
      if (status === 401) assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="espf"', what);
    }
    assert.deepEqual(await statuses(), before);
  });

  it('refuses a chunked body over 64 KiB (no Content-Length) with 413', async () => {
    const before = await statuses();
    const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(`${base}/espf/v1/account/i/${iAccount}/status`, {
        method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', 'transfer-encoding': 'chunked' },
      }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => { text += c.toString(); });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      });
      req.on('error', reject);
      req.write(`{"status":"OK","group":"HSS","message":"`);
      for (let i = 0; i < 10; i++) req.write('y'.repeat(8192));
      req.end('"}');
    });
    assert.equal(status, 413);
    assert.match(JSON.parse(body).error, /larger than/);
    assert.deepEqual(await statuses(), before);
  });

  it('503 while disabled; env:NAME reads the token from the environment', async () => {
    const before = await statuses();
    await t.db.query(sql`UPDATE espf.status_api SET enabled = false`);
    const off = await post(iAccount, { status: 'OK', group: 'HSS' });
    assert.equal(off.status, 503);
    assert.match(((await off.json()) as { error: string }).error, /disabled/);
    assert.deepEqual(await statuses(), before);

    delete process.env.ESPF_SECRET_TEST_STATUS_TOKEN;
    await t.db.query(sql`UPDATE espf.status_api SET token = 'env:ESPF_SECRET_TEST_STATUS_TOKEN', enabled = true`);
    const unset = await post(iAccount, { status: 'OK', group: 'HSS' }, { token: 'env:ESPF_SECRET_TEST_STATUS_TOKEN' });
    assert.equal(unset.status, 503, 'the variable is not set: nobody gets in, not even with the literal env:NAME');
    process.env.ESPF_SECRET_TEST_STATUS_TOKEN = 'from-the-environment-42';
    try {
      assert.equal((await post(iAccount, { status: 'OK', group: 'HSS' })).status, 401, 'the column value is no longer the token');
      const ok = await post(iAccount, { status: 'RETRY', group: 'HSS' }, { token: 'from-the-environment-42' });
      assert.equal(ok.status, 200);
      const [row] = await t.db.query(sql`SELECT status FROM espf.account_provisioning_statuses WHERE i_account = ${iAccount} AND handler = 'HSS'`);
      assert.equal(row.status, 'RETRY');
    } finally {
      delete process.env.ESPF_SECRET_TEST_STATUS_TOKEN;
      await t.db.query(sql`UPDATE espf.status_api SET token = ${TOKEN}, enabled = true`);
    }
  });

  it('serves its OpenAPI 3 description at /espf/v1/openapi.json', async () => {
    const res = await fetch(`${base}/espf/v1/openapi.json`);
    assert.equal(res.status, 200);
    const doc = await res.json() as { openapi: string; paths: Record<string, { post?: { responses: Record<string, unknown> } }>; components: { schemas: Record<string, { properties?: Record<string, { enum?: string[]; maxLength?: number }> }> } };
    assert.match(doc.openapi, /^3\./);
    const op = doc.paths['/espf/v1/account/i/{i_account}/status']?.post;
    assert.ok(op, 'the status operation');
    for (const code of ['200', '400', '401', '404', '413']) assert.ok(op.responses[code], `response ${code}`);
    const props = doc.components.schemas.StatusReport!.properties!;
    assert.deepEqual(props.status!.enum, ['OK', 'IN_PROGRESS', 'RETRY', 'FAILED']);
    assert.equal(props.message!.maxLength, 4000);
  });
});

describe('status API settings: espf.status_api refuses bad rows, naming the column and the rule', function () {
  let t: TestDatabase;
  before(async () => { t = await createTestDatabase(); });
  after(async () => { await t?.drop(); });

  async function refused(q: ReturnType<typeof sql>, column: RegExp): Promise<void> {
    await assert.rejects(t.db.query(q), (err: Error & { code?: string }) => {
      assert.equal(err.code, '23514');
      assert.match(err.message, column);
      return true;
    });
  }

  it('is off by default, with one row', async () => {
    assert.deepEqual(await t.db.query(sql`SELECT enabled, token FROM espf.status_api`), [{ enabled: false, token: null }]);
  });

  it('refuses enabling without a token, short or spaced tokens, a bad env:NAME, a second row and deleting the row', async () => {
    await refused(sql`UPDATE espf.status_api SET enabled = true`, /^espf\.status_api\.enabled: the status API cannot be enabled without a token/);
    await refused(sql`UPDATE espf.status_api SET token = 'short'`, /^espf\.status_api\.token: must be 16 to 1024 printable ASCII characters/);
    await refused(sql`UPDATE espf.status_api SET token = 'a token with spaces in it'`, /^espf\.status_api\.token: must be 16/);
    await refused(sql`UPDATE espf.status_api SET token = 'env:1BAD'`, /^espf\.status_api\.token: 'env:1BAD' is not a valid env:NAME/);
    await refused(sql`DELETE FROM espf.status_api`, /^espf\.status_api: the settings row cannot be deleted/);
    await assert.rejects(t.db.query(sql`INSERT INTO espf.status_api (id) VALUES (false)`), /status_api_one_row/);
    assert.deepEqual(await t.db.query(sql`SELECT enabled, token FROM espf.status_api`), [{ enabled: false, token: null }]);
    await t.db.query(sql`UPDATE espf.status_api SET token = 'env:ESPF_SECRET_STATUS_TOKEN', enabled = true`);
  });
});
