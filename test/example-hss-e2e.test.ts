// The worked example of request steps end to end: examples/hss/handler.sql applied
// as written (then pointed at this test's HSS and given short retries), a real
// `espf run` child process, and the example HSS (examples/hss) on 127.0.0.1. The
// assertions read the HSS's own tables and request log.
import assert from 'node:assert/strict';
import path from 'node:path';
import { sql } from '@databases/pg';
import { startHss, type Hss, type HssRequest } from '../examples/hss/src/server.ts';
import { EspfProcess, runEspf } from './support/child.ts';
import { show } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { eventually } from './support/receiver.ts';
import { seedCustomer } from './support/sender.ts';

const KEY = 'hss-e2e-key';
const HANDLER_SQL = path.join(import.meta.dirname, '..', 'examples', 'hss', 'handler.sql');

/** Test keys of a SIM vendor's file: 32 hex digits each. */
const ki = (imsi: string): string => imsi.padStart(32, 'A');
const opc = (imsi: string): string => imsi.padStart(32, 'C');

describe('example HSS end to end: handler.sql, espf run → examples/hss', function () {
  this.timeout(120_000);
  let t: TestDatabase;
  let hss: Hss;
  let run: EspfProcess;
  let ids: { i_product: number; i_customer: number };

  before(async function () {
    this.timeout(60_000);
    t = await createTestDatabase();
    hss = await startHss({ port: 0, apiKey: KEY });
    ids = await seedCustomer(t.db, { name: 'HSS e2e' });
    await t.db.tx((tx) => tx.query(sql.file(HANDLER_SQL)));
    // The file's one site-specific line, and retries short enough for a test.
    await t.db.query(sql`UPDATE espf.http_handlers SET url = ${[hss.url]}::text[], retry_delay = 0.05, retry_max_delay = 0.2 WHERE handler = 'HSS'`);
    run = new EspfProcess(t.url, 'main', { ESPF_SECRET_HSS_KEY: KEY });
    await run.streaming();
  });

  after(async () => {
    if (run && run.exitCode === undefined) await run.stop();
    await hss?.close();
    await t?.drop();
  });

  /** The SIM vendor's key file, loaded into the AuC (not espf's job: billing has no ki/opc). */
  async function loadAuc(imsi: string): Promise<number> {
    const res = await fetch(`${hss.url}/auc/`, {
      method: 'PUT', headers: { 'provisioning-key': KEY, 'content-type': 'application/json' },
      body: JSON.stringify({ imsi, ki: ki(imsi), opc: opc(imsi), amf: '8000' }),
    });
    assert.equal(res.status, 200);
    return ((await res.json()) as { auc_id: number }).auc_id;
  }

  /** A new account and, in the same transaction, its SIM card. */
  async function newSubscriber(number: string, imsi: string): Promise<number> {
    return t.db.tx(async (tx) => {
      const [a] = await tx.query(sql`INSERT INTO billing.account (id, i_customer, i_product) VALUES (${number}, ${ids.i_customer}, ${ids.i_product}) RETURNING i_account`);
      await tx.query(sql`INSERT INTO billing.sim_card (imsi, i_account) VALUES (${imsi}, ${a.i_account})`);
      return Number(a.i_account);
    });
  }

  /** An account whose SIM is in the HSS: its i_account and subscriber_id. */
  async function provisioned(number: string, imsi: string): Promise<{ a: number; id: number }> {
    await loadAuc(imsi);
    const a = await newSubscriber(number, imsi);
    await delivered(a, 'SIMCard/Assigned');
    return { a, id: subscriber(imsi)!.subscriber_id };
  }

  const subscriber = (imsi: string) => hss.state().subscriber.find((s) => s.imsi === imsi);
  /** The HSS's log of the requests that concern one IMSI (its own paths, or its subscriber's id). */
  function requestsOf(imsi: string, subscriberId?: number): string[] {
    return hss.state().requests
      .filter((r: HssRequest) => !(r.method === 'PUT' && r.path === '/auc/')) // the vendor's key file, loaded by the test
      .filter((r: HssRequest) => r.path.endsWith(`/${imsi}`) || (r.body as { imsi?: string } | null)?.imsi === imsi
        || (subscriberId !== undefined && r.path === `/subscriber/${subscriberId}`))
      .map((r) => `${r.method} ${r.path} ${r.status}${r.method === 'PATCH' ? ` ${JSON.stringify(r.body)}` : ''}`);
  }

  async function delivered(iAccount: number, type: string, n = 1): Promise<{ attempts: number; steps_done: number }[]> {
    return eventually(async () => {
      const rows = await t.db.query(sql`
        SELECT attempts, steps_done, state FROM espf.event_deliveries
         WHERE handler = 'HSS' AND i_account = ${iAccount} AND event_type = ${type} ORDER BY i_event`);
      return rows.length === n && rows.every((r) => r.state === 'DELIVERED') ? rows : undefined;
    }, 20_000, `${n} ${type} of account ${iAccount} DELIVERED`);
  }

  it('the rows pass espf handler check HSS', async () => {
    const r = await runEspf(['handler', 'check', 'HSS'], { DATABASE_URL: t.url, ESPF_SECRET_HSS_KEY: KEY });
    assert.equal(r.code, 0, show(r));
    for (const type of ['SIMCard/Assigned', 'SIMCard/Released', 'Account/ID/Changed', 'Account/Blocked', 'Account/Unblocked']) {
      assert.match(r.stdout, new RegExp(type.replace(/\//g, '\\/')), show(r));
    }
  });

  it('a new account with a SIM: the subscriber is created with the auc_id of its IMSI', async () => {
    const imsi = '001010000000001';
    const aucId = await loadAuc(imsi);
    await loadAuc('001010000000099'); // another SIM of the batch: its auc_id must not be taken
    const a = await newSubscriber('+4915550001', imsi);
    await delivered(a, 'SIMCard/Assigned');
    const s = subscriber(imsi);
    assert.ok(s, 'the subscriber exists');
    assert.deepEqual({ msisdn: s.msisdn, auc_id: s.auc_id, enabled: s.enabled }, { msisdn: '4915550001', auc_id: aucId, enabled: true });
    assert.deepEqual(requestsOf(imsi), [`GET /auc/imsi/${imsi} 200`, 'PUT /subscriber/ 200']);
    assert.equal(hss.state().auc.filter((r) => r.imsi === imsi).length, 1);

    // The dry run renders this event's first step as it was sent.
    const [ev] = await t.db.query(sql`SELECT i_event FROM espf.events WHERE event_type = 'SIMCard/Assigned' AND variables->>'imsi' = ${imsi}`);
    const r = await runEspf(['handler', 'check', 'HSS', '--event', String(ev.i_event)], { DATABASE_URL: t.url, ESPF_SECRET_HSS_KEY: KEY });
    assert.equal(r.code, 0, show(r));
    assert.ok(r.stdout.includes(`step 1 (auc): GET ${hss.url}/auc/imsi/${imsi}`), show(r));
    assert.match(r.stdout, /provisioning-key: \*\*\*/, 'the key is masked');
  });

  it('a number change, a block and an unblock change the subscriber found by IMSI', async () => {
    const imsi = '001010000000002';
    const { a, id } = await provisioned('4915550002', imsi);

    await t.db.query(sql`UPDATE billing.account SET id = '+4915550202' WHERE i_account = ${a}`);
    await delivered(a, 'Account/ID/Changed');
    assert.equal(subscriber(imsi)!.msisdn, '4915550202');

    await t.db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account = ${a}`);
    await delivered(a, 'Account/Blocked');
    assert.equal(subscriber(imsi)!.enabled, false);

    await t.db.query(sql`UPDATE billing.account SET blocked = false WHERE i_account = ${a}`);
    await delivered(a, 'Account/Unblocked');
    assert.deepEqual(subscriber(imsi), { subscriber_id: id, imsi, msisdn: '4915550202', auc_id: subscriber(imsi)!.auc_id, enabled: true });
    assert.deepEqual(requestsOf(imsi, id), [
      `GET /auc/imsi/${imsi} 200`, 'PUT /subscriber/ 200',
      `GET /subscriber/imsi/${imsi} 200`, `PATCH /subscriber/${id} 200 {"msisdn":"4915550202"}`,
      `GET /subscriber/imsi/${imsi} 200`, `PATCH /subscriber/${id} 200 {"enabled":false}`,
      `GET /subscriber/imsi/${imsi} 200`, `PATCH /subscriber/${id} 200 {"enabled":true}`,
    ]);
  });

  it('a deletion (SIM released, account deleted) deletes the subscriber after its lookup; the AuC row stays', async () => {
    const imsi = '001010000000003';
    const { a, id } = await provisioned('4915550003', imsi);
    await t.db.tx(async (tx) => {
      await tx.query(sql`DELETE FROM billing.sim_card WHERE imsi = ${imsi}`);
      await tx.query(sql`DELETE FROM billing.account WHERE i_account = ${a}`);
    });
    await delivered(a, 'SIMCard/Released');
    assert.equal(subscriber(imsi), undefined);
    assert.equal(hss.state().auc.filter((r) => r.imsi === imsi).length, 1, 'the vendor keys stay for the SIM');
    assert.deepEqual(requestsOf(imsi, id).slice(2), [`GET /subscriber/imsi/${imsi} 200`, `DELETE /subscriber/${id} 200`]);
  });

  it('PUT /subscriber/ fails twice: the create resumes at step 2 with the auc_id step 1 got; the account\'s later events wait', async () => {
    const imsi = '001010000000004';
    const aucId = await loadAuc(imsi);
    hss.failNext('/subscriber/', 2);
    const a = await newSubscriber('4915550004', imsi);
    // Committed while the create is still failing: they go after it, in commit order.
    await t.db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account = ${a}`);
    await t.db.query(sql`UPDATE billing.account SET id = '4915550404' WHERE i_account = ${a}`);
    await t.db.query(sql`UPDATE billing.account SET blocked = false WHERE i_account = ${a}`);

    const [create] = await delivered(a, 'SIMCard/Assigned');
    assert.equal(create!.attempts, 3);
    assert.equal(create!.steps_done, 2);
    await delivered(a, 'Account/Unblocked');
    const s = subscriber(imsi)!;
    assert.deepEqual({ msisdn: s.msisdn, auc_id: s.auc_id, enabled: s.enabled }, { msisdn: '4915550404', auc_id: aucId, enabled: true });
    assert.equal(hss.state().auc.filter((r) => r.imsi === imsi).length, 1, 'one AuC row');
    assert.equal(hss.state().subscriber.filter((r) => r.imsi === imsi).length, 1, 'one subscriber');
    const id = s.subscriber_id;
    assert.deepEqual(requestsOf(imsi, id), [
      `GET /auc/imsi/${imsi} 200`, 'PUT /subscriber/ 500', 'PUT /subscriber/ 500', 'PUT /subscriber/ 200',
      `GET /subscriber/imsi/${imsi} 200`, `PATCH /subscriber/${id} 200 {"enabled":false}`,
      `GET /subscriber/imsi/${imsi} 200`, `PATCH /subscriber/${id} 200 {"msisdn":"4915550404"}`,
      `GET /subscriber/imsi/${imsi} 200`, `PATCH /subscriber/${id} 200 {"enabled":true}`,
    ], 'step 1 once, then every event of the account in commit order');
  });

  it('a lookup answered 200 null is retried until the row is there (an AuC row loaded late)', async () => {
    const imsi = '001010000000005';
    const a = await newSubscriber('4915550005', imsi);
    await eventually(async () => requestsOf(imsi).filter((r) => r === `GET /auc/imsi/${imsi} 200`).length >= 2 || undefined,
      20_000, 'the AuC lookup answered 200 null and asked again');
    const [row] = await t.db.query(sql`SELECT state, steps_done, last_error FROM espf.event_deliveries WHERE handler = 'HSS' AND i_account = ${a}`);
    assert.equal(row.state, 'RETRY');
    assert.equal(row.steps_done, 0);
    assert.match(row.last_error, /step 1 \(auc\) GET \/auc\/imsi\/001010000000005: 200 null/);
    const aucId = await loadAuc(imsi);
    await delivered(a, 'SIMCard/Assigned');
    assert.equal(subscriber(imsi)!.auc_id, aucId);
  });

  it('a SIM swap: the old SIM\'s subscriber is deleted, then the new one created, in commit order', async () => {
    const [oldImsi, newImsi] = ['001010000000006', '001010000000007'];
    const { a, id } = await provisioned('4915550006', oldImsi);
    await loadAuc(newImsi);
    await t.db.tx(async (tx) => {
      await tx.query(sql`UPDATE billing.sim_card SET i_account = NULL WHERE imsi = ${oldImsi}`);
      await tx.query(sql`INSERT INTO billing.sim_card (imsi, i_account) VALUES (${newImsi}, ${a})`);
    });
    await delivered(a, 'SIMCard/Assigned', 2);
    await delivered(a, 'SIMCard/Released');
    assert.equal(subscriber(oldImsi), undefined);
    assert.equal(subscriber(newImsi)?.msisdn, '4915550006');
    const log = hss.state().requests.map((r) => `${r.method} ${r.path}`);
    assert.ok(log.indexOf(`DELETE /subscriber/${id}`) < log.indexOf(`GET /auc/imsi/${newImsi}`), log.join('\n'));
  });

  it('a block of an account without a SIM fails at once (nothing in the HSS), and the account\'s next events go on', async () => {
    const imsi = '001010000000008';
    await loadAuc(imsi);
    const [row] = await t.db.query(sql`INSERT INTO billing.account (id, i_customer, i_product) VALUES ('4915550008', ${ids.i_customer}, ${ids.i_product}) RETURNING i_account`);
    const a = Number(row.i_account);
    await t.db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account = ${a}`);
    await t.db.query(sql`INSERT INTO billing.sim_card (imsi, i_account) VALUES (${imsi}, ${a})`);
    const failed = await eventually(async () => {
      const [d] = await t.db.query(sql`SELECT state, attempts, last_error FROM espf.event_deliveries WHERE handler = 'HSS' AND i_account = ${a} AND event_type = 'Account/Blocked'`);
      return d?.state === 'FAILED' ? d : undefined;
    }, 20_000, 'the block FAILED');
    assert.equal(failed.attempts, 1);
    assert.match(failed.last_error, /step 1 \(lookup\) GET \/subscriber\/imsi\/-: 200 null/);
    await delivered(a, 'SIMCard/Assigned');
    assert.equal(subscriber(imsi)?.msisdn, '4915550008');
  });

  it('espf migrate keeps the rules handler.sql changed, and says so', async () => {
    const r = await runEspf(['migrate'], { DATABASE_URL: t.url });
    assert.equal(r.code, 0, show(r));
    for (const rule of ['Account/Blocked', 'Account/Unblocked', 'Account/ID/Changed']) {
      assert.ok(`${r.stdout}${r.stderr}`.includes(`kept built-in rule ${rule} as changed by a DBA`), show(r));
    }
    const imsi = '001010000000009';
    const { a } = await provisioned('4915550009', imsi);
    await t.db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account = ${a}`);
    await delivered(a, 'Account/Blocked');
    assert.equal(subscriber(imsi)?.enabled, false);
  });
});
