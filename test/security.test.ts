import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { sql } from '@databases/pg';
import type { TestDatabase } from './support/database.ts';
import type { EspfProcess } from './support/child.ts';
import { deliveryFixture, type SenderRun } from './support/fixture.ts';
import { eventually, type TestReceiver } from './support/receiver.ts';

/**
 * Secrets as `env:NAME` (never in a log, an error or an event) and https
 * receivers with a custom CA bundle (espf.http_handlers.ca_file).
 */

type Ids = { i_product: number; i_customer: number };

async function addAccount(t: TestDatabase, ids: Ids, id: string): Promise<number> {
  const [a] = await t.db.query(sql`INSERT INTO billing.account (id, i_customer, i_product) VALUES (${id}, ${ids.i_customer}, ${ids.i_product}) RETURNING i_account`);
  return a.i_account;
}

async function delivery(t: TestDatabase, iAccount: number) {
  const [d] = await t.db.query(sql`SELECT * FROM espf.event_deliveries WHERE i_account = ${iAccount} AND handler = 'EventSender'`);
  return d;
}

describe('security', function () {
  this.timeout(60_000);

  describe('env:NAME secrets (espf run as a child process)', () => {
    const SECRET = `s3cr3t-${randomBytes(9).toString('hex')}`;
    const basic = `Basic ${Buffer.from(`hss:${SECRET}`).toString('base64')}`;
    before(() => {
      assert.equal(process.env.ESPF_SECRET_TEST_KEY, undefined, 'the test process itself has no ESPF_SECRET_TEST_KEY');
    });
    const f = deliveryFixture({
      types: ['Account/New', 'Account/Blocked'],
      settings: { basic_auth_user: 'hss', basic_auth_key: 'env:ESPF_SECRET_TEST_KEY', auth_method: 'Basic', max_attempts: 1000 },
      sender: 'child',
      child: { env: { ESPF_SECRET_TEST_KEY: SECRET, ESPF_LOG_LEVEL: 'debug' } },
    });
    let t: TestDatabase;
    let rx: TestReceiver;
    let child: EspfProcess;
    let ids: Ids;
    before(() => { ({ t, rx, child, ids } = f); });

    it('the receiver gets the Basic header built from the variable, also after a refused attempt', async () => {
      let refused = 0;
      // The first attempt is refused with the header echoed back, as a careless receiver might.
      rx.respond = (r) => (refused++ === 0 ? { status: 401, body: `bad credentials: ${String(r.headers.authorization)}` } : { status: 200 });
      const a = await addAccount(t, ids, 'sec-1');
      await rx.waitFor(() => rx.received.length === 1, 15_000, 'the event');
      assert.equal(rx.arrived.length, 2);
      for (const r of rx.arrived) assert.equal(r.headers.authorization, basic);
      const d = await eventually(async () => ((await delivery(t, a))?.state === 'DELIVERED' ? delivery(t, a) : undefined), 10_000, 'DELIVERED');
      assert.equal(d.attempts, 2);
    });

    it('without the variable the attempt fails naming the variable (not a value), and is retried until it is there', async () => {
      // An account whose event is retried (the receiver answers 500) while the key is switched to a missing variable:
      // its reason changes once espf run applies the new configuration (within 2 s).
      rx.respond = () => ({ status: 500, body: 'down' });
      const a = await addAccount(t, ids, 'sec-2');
      await eventually(async () => (await delivery(t, a))?.last_error === 'HTTP 500: down', 15_000, 'a retried delivery');
      await t.db.query(sql`UPDATE espf.http_handlers SET basic_auth_key = 'env:ESPF_SECRET_TEST_MISSING_KEY' WHERE handler = 'EventSender'`);
      const missing = 'basic_auth_key names the environment variable ESPF_SECRET_TEST_MISSING_KEY, which is not set';
      const first = await eventually(async () => {
        const x = await delivery(t, a);
        return x?.last_error === missing ? x : undefined;
      }, 15_000, 'the reason to name the missing variable');
      const sent = rx.arrived.length;
      const d = await eventually(async () => {
        const x = await delivery(t, a);
        return x?.attempts >= first.attempts + 2 ? x : undefined;
      }, 15_000, 'more retries');
      assert.equal(d.state, 'RETRY');
      assert.equal(d.last_error, missing);
      assert.equal(d.last_http_status, null);
      assert.equal(rx.arrived.length, sent, 'nothing was sent without the key');
      const [st] = await t.db.query(sql`SELECT status, message FROM espf.account_provisioning_statuses WHERE i_account = ${a}`);
      assert.equal(st.status, 'RETRY');
      // Point it back at a variable that is set: the same delivery goes out.
      rx.respond = () => ({ status: 200 });
      await t.db.query(sql`UPDATE espf.http_handlers SET basic_auth_key = 'env:ESPF_SECRET_TEST_KEY' WHERE handler = 'EventSender'`);
      await rx.waitFor(() => rx.received.some((r) => r.json.variables.i_account === a), 15_000, 'the retried event');
      assert.equal(rx.received.find((r) => r.json.variables.i_account === a)!.headers.authorization, basic);
    });

    it('the secret appears nowhere: provisioning.log, stdout/stderr, espf.events, espf.event_deliveries, account statuses', async () => {
      await t.db.query(sql`UPDATE billing.account SET blocked = true WHERE id = 'sec-1'`);
      await rx.waitFor(() => rx.received.some((r) => r.json.event_type === 'Account/Blocked'), 15_000, 'Account/Blocked');
      await child.stop();
      assert.equal(child.exitCode, 0, child.output);
      const plog = readFileSync(path.join(child.logDir, 'provisioning.log'), 'utf8');
      assert.ok(plog.split('\n').filter(Boolean).length >= 5, `attempts logged:\n${plog}`);
      assert.match(plog, /HTTP 401/, 'the refused attempt is logged');
      assert.match(plog, /ESPF_SECRET_TEST_MISSING_KEY/, 'the missing variable is logged by name');
      const [db] = await t.db.query(sql`SELECT
        (SELECT string_agg(x::text, E'\n') FROM espf.events x) AS events,
        (SELECT string_agg(x::text, E'\n') FROM espf.event_deliveries x) AS deliveries,
        (SELECT string_agg(x::text, E'\n') FROM espf.account_provisioning_statuses x) AS statuses`);
      const encoded = Buffer.from(`hss:${SECRET}`).toString('base64');
      for (const [where, text] of [['provisioning.log', plog], ['espf run output', child.output], ['espf.events', db.events],
        ['espf.event_deliveries', db.deliveries], ['espf.account_provisioning_statuses', db.statuses]] as const) {
        assert.ok(text && text.length > 0, `${where} is not empty`);
        assert.ok(!text.includes(SECRET), `the secret is in ${where}`);
        assert.ok(!text.includes(encoded), `the encoded secret is in ${where}`);
      }
    });
  });

  describe('https receivers and ca_file (in-process sender)', () => {
    let t: TestDatabase;
    let dir: string;
    let server: https.Server;
    let url: string;
    const got: number[] = [];
    let run: SenderRun;
    let ids: Ids;

    const f = deliveryFixture({
      types: ['Account/New'],
      settings: { max_attempts: 1000 },
      url: () => url,
      prepare: async () => {
        dir = mkdtempSync(path.join(os.tmpdir(), 'espf-tls-'));
        execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1',
          '-addext', 'subjectAltName=IP:127.0.0.1', '-days', '2',
          '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { stdio: 'ignore' });
        server = https.createServer({ key: readFileSync(path.join(dir, 'key.pem')), cert: readFileSync(path.join(dir, 'cert.pem')) }, (req, res) => {
          const chunks: Buffer[] = [];
          req.on('data', (c: Buffer) => chunks.push(c));
          req.on('end', () => {
            got.push(JSON.parse(Buffer.concat(chunks).toString('utf8')).variables.i_account);
            res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
          });
        });
        await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
        url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/events`;
      },
    });
    before(() => { ({ t, run, ids } = f); });
    after(async () => {
      server?.closeAllConnections();
      if (server) await new Promise<void>((r) => server.close(() => r()));
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('a self-signed certificate is refused without ca_file (TLS reason), then delivered with ca_file pointing at it', async () => {
      const a = await addAccount(t, ids, 'tls-1');
      const d = await eventually(async () => {
        const x = await delivery(t, a);
        return x?.state === 'RETRY' ? x : undefined;
      }, 15_000, 'a failed TLS attempt');
      assert.match(d.last_error, /SELF_SIGNED|self[- ]signed|certificate/i, d.last_error);
      assert.equal(d.last_http_status, null);
      assert.deepEqual(got, [], 'no request reached the server');

      await t.db.query(sql`UPDATE espf.http_handlers SET ca_file = ${path.join(dir, 'cert.pem')} WHERE handler = 'EventSender'`);
      const ok = await eventually(async () => ((await delivery(t, a))?.state === 'DELIVERED' ? delivery(t, a) : undefined), 15_000, 'delivered over https');
      assert.equal(ok.last_http_status, 200);
      assert.deepEqual(got, [a]);
      const b = await addAccount(t, ids, 'tls-2');
      await eventually(async () => (await delivery(t, b))?.state === 'DELIVERED', 15_000, 'the next event');
      assert.deepEqual(got, [a, b]);
    });

    it('a ca_file that cannot be read fails the attempt naming the file, and the handler recovers when it is fixed', async () => {
      const missing = path.join(dir, 'nope.pem');
      await t.db.query(sql`UPDATE espf.http_handlers SET ca_file = ${missing} WHERE handler = 'EventSender'`);
      // The next event must meet the new ca_file: wait until the running sender has read it.
      await eventually(async () => run.sender.configuration.handlers.get('EventSender')?.http?.ca_file === missing, 5000, 'the sender to read ca_file');
      const a = await addAccount(t, ids, 'tls-3');
      const d = await eventually(async () => {
        const x = await delivery(t, a);
        return x?.state === 'RETRY' ? x : undefined;
      }, 15_000, 'a failed attempt');
      assert.equal(d.last_error, `ca_file ${missing} cannot be read (ENOENT)`);
      await t.db.query(sql`UPDATE espf.http_handlers SET ca_file = ${path.join(dir, 'cert.pem')} WHERE handler = 'EventSender'`);
      await eventually(async () => (await delivery(t, a))?.state === 'DELIVERED', 15_000, 'delivered once ca_file is right');
      assert.equal(got.at(-1), a);
    });
  });
});
