// Request steps (docs/handlers.md, "Request steps"): an http handler that
// speaks its receiver's own API, end to end on a real PostgreSQL, a real
// in-process sender and a real HTTP receiver (a fake HSS).
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { sql } from '@databases/pg';
import { deliveryFixture } from './support/fixture.ts';
import { eventually, TestReceiver, type Received } from './support/receiver.ts';
import { addAccounts } from './support/sender.ts';
import { addHttpHandler, BLOCK_STEPS, CREATE_STEPS, FakeHss, setSteps } from './support/steps.ts';
import { EspfProcess, runEspf } from './support/child.ts';
import { Webhook } from 'standardwebhooks';
import { startHss, type Hss } from '../examples/hss/src/server.ts';
import { startHttpServer } from '../src/run/http-server.ts';

const SECRET = 'hss-key-5f1c0e9a7d';

describe('request steps: a handler that speaks the receiver\'s own API', function () {
  let hss: FakeHss;
  let rx2: TestReceiver;
  const f = deliveryFixture({
    types: ['Account/New'],
    prepare: async (fx) => {
      hss = new FakeHss();
      fx.rx.respond = hss.respond;
      rx2 = await new TestReceiver().listen();
      process.env.ESPF_SECRET_HSS_KEY = SECRET;
    },
    setup: async (fx) => {
      // EventSender stays a plain handler, to rx2: its body is unchanged.
      await fx.t.db.query(sql`UPDATE espf.http_handlers SET url = ${[rx2.url]}::text[] WHERE handler = 'EventSender'`);
      await addHttpHandler(fx.t.db, 'HSS', `http://127.0.0.1:${fx.rx.port}`,
        ['Account/New', 'Account/Blocked', 'Account/Unblocked', 'Account/Password/Changed', 'Account/ServicePassword/Changed'], { max_attempts: 3 });
      await setSteps(fx.t.db, 'HSS', 'Account/New', CREATE_STEPS.map((s) => ({ ...s, headers: { 'X-Api-Key': 'env:ESPF_SECRET_HSS_KEY' } })));
      await setSteps(fx.t.db, 'HSS', 'Account/Blocked', BLOCK_STEPS);
    },
  });
  after(async () => {
    await rx2?.close();
    delete process.env.ESPF_SECRET_HSS_KEY;
  });
  afterEach(() => { hss.fail = () => null; });

  const arrivedFor = (pred: (r: Received) => boolean) => f.rx.arrived.filter(pred);
  async function row(iEvent: number, handler = 'HSS'): Promise<Record<string, unknown>> {
    const [r] = await f.t.db.query(sql`SELECT state, attempts, steps_done, step_answers, last_http_status, last_error
                                         FROM espf.event_deliveries WHERE i_event = ${iEvent} AND handler = ${handler}`);
    return r;
  }
  async function eventOf(type: string, iAccount: number): Promise<number> {
    return eventually(async () => {
      const [e] = await f.t.db.query(sql`SELECT i_event FROM espf.events WHERE event_type = ${type} AND (variables->>'i_account')::bigint = ${iAccount} ORDER BY i_event DESC LIMIT 1`);
      return e ? Number(e.i_event) : undefined;
    }, 10_000, `the ${type} event of account ${iAccount}`);
  }
  /** The running sender reads the steps of `type` (it polls the configuration). */
  async function stepsSeen(handler: string, type: string, count: number): Promise<void> {
    await eventually(async () => (f.run.sender.configuration.handlers.get(handler)?.steps ?? []).filter((r) => r.event_type === type).length === count,
      5000, `the sender to see ${count} steps of ${handler} ${type}`);
  }
  async function settled(iEvent: number, state: string, handler = 'HSS'): Promise<Record<string, unknown>> {
    return eventually(async () => { const r = await row(iEvent, handler); return r?.state === state ? r : undefined; }, 15_000, `${iEvent} ${state}`);
  }

  it('a two-step create carries auc_id from step 1 to step 2; the plain handler keeps the EventSender body', async () => {
    const [a] = await addAccounts(f.t.db, f.ids, 1, 'imsi-001-');
    const iEvent = await eventOf('Account/New', a!);
    const r = await settled(iEvent, 'DELIVERED');
    const mine = arrivedFor((x) => x.body.includes(`imsi-001-1`));
    assert.deepEqual(mine.map((x) => `${x.method} ${x.path}`), ['PUT /auc/', 'PUT /subscriber/']);
    const auc = JSON.parse(mine[0]!.body);
    assert.deepEqual(auc, { imsi: 'imsi-001-1', ki: '000102030405060708090a0b0c0d0e0f', opc: '0f0e0d0c0b0a09080706050403020100', amf: '8000' });
    const sub = JSON.parse(mine[1]!.body);
    assert.equal(sub.auc_id, [...hss.aucs.keys()].find((k) => hss.aucs.get(k)!.imsi === 'imsi-001-1'));
    assert.equal(sub.msisdn, `49${a}`);
    assert.equal(mine[0]!.headers['content-type'], 'application/json');
    assert.equal(mine[0]!.headers['x-api-key'], SECRET);
    assert.equal(r.steps_done, 2);
    assert.equal(r.attempts, 1);
    // The plain handler: the EventSender body, byte for byte.
    await rx2.waitFor(() => rx2.received.some((x) => x.json.variables.i_account === a), 10_000, 'the plain POST');
    const plain = rx2.received.find((x) => x.json.variables.i_account === a)!;
    const [e] = await f.t.db.query(sql`SELECT variables FROM espf.events WHERE i_event = ${iEvent}`);
    assert.equal(plain.body, JSON.stringify({ event_type: 'Account/New', variables: e.variables }));
    assert.equal(plain.method, 'POST');
  });

  it('step 2 fails twice, then succeeds: step 1 is sent once, the retries resume at step 2 with its answer', async () => {
    let failures = 0;
    hss.fail = (r) => r.path === '/subscriber/' && r.body.includes('imsi-002-') && failures++ < 2 ? { status: 503, body: '{"result":"busy"}' } : null;
    const [a] = await addAccounts(f.t.db, f.ids, 1, 'imsi-002-');
    const iEvent = await eventOf('Account/New', a!);
    const r = await settled(iEvent, 'DELIVERED');
    const mine = arrivedFor((x) => x.body.includes('imsi-002-1'));
    assert.deepEqual(mine.map((x) => `${x.method} ${x.path}`), ['PUT /auc/', 'PUT /subscriber/', 'PUT /subscriber/', 'PUT /subscriber/']);
    const aucIds = new Set(mine.slice(1).map((x) => JSON.parse(x.body).auc_id));
    assert.equal(aucIds.size, 1, 'every retry carries the auc_id of the one step 1');
    assert.equal(r.attempts, 3);
    assert.equal(r.steps_done, 2);
  });

  it('an answer the success rule refuses (200 null) is retried, then FAILED after max_attempts, naming the step', async () => {
    hss.fail = (r) => r.path === '/subscriber/' && r.body.includes('imsi-003-') ? { status: 200, body: 'null' } : null;
    const [a] = await addAccounts(f.t.db, f.ids, 1, 'imsi-003-');
    const iEvent = await eventOf('Account/New', a!);
    const r = await settled(iEvent, 'FAILED');
    assert.equal(r.attempts, 3);
    assert.equal(r.last_http_status, 200);
    assert.equal(r.last_error, 'step 2 (sub) PUT /subscriber/: 200 null');
    assert.equal(r.steps_done, 1, 'step 1 stays done');
    assert.equal(arrivedFor((x) => x.path === '/auc/' && x.body.includes('imsi-003-')).length, 1);
    // provisioning.log has one line per request, the failed ones with the reason.
    const lines = await eventually(async () => {
      const l = readdirSync(f.run.logDir).flatMap((n) => readFileSync(path.join(f.run.logDir, n), 'utf8').split('\n'))
        .filter((x) => x.includes(`"i_event":${iEvent},`) && x.includes('"handler":"HSS"'));
      return l.length >= 4 ? l : undefined;
    }, 5000, 'four lines in provisioning.log');
    assert.deepEqual(lines.map((l) => JSON.parse(l).error), [null, ...Array(3).fill('step 2 (sub) PUT /subscriber/: 200 null')]);
  });

  it('a permanent refusal (refuse_when) is FAILED at once; "already exists" (exists_when) counts as done', async () => {
    await setSteps(f.t.db, 'HSS', 'Account/Password/Changed', [
      { method: 'POST', path: '/password/{variables.i_account}', body: '{"changed": true}', refuse_when: 'status = 403' },
    ]);
    await setSteps(f.t.db, 'HSS', 'Account/ServicePassword/Changed', [
      { method: 'PUT', path: '/funds/{variables.i_account}', body: '{"zero": true}', exists_when: 'status = 400 and body.result = "Failed"' },
    ]);
    await stepsSeen('HSS', 'Account/Password/Changed', 1);
    await stepsSeen('HSS', 'Account/ServicePassword/Changed', 1);
    hss.fail = (r) => r.path.startsWith('/password/') ? { status: 403, body: '{"result":"Forbidden"}' }
      : r.path.startsWith('/funds/') ? { status: 400, body: '{"result":"Failed"}' } : null;
    const [a] = await addAccounts(f.t.db, f.ids, 1, 'imsi-004-');
    await f.t.db.query(sql`UPDATE billing.account SET password = 'x1' WHERE i_account = ${a!}`);
    const refused = await settled(await eventOf('Account/Password/Changed', a!), 'FAILED');
    assert.equal(refused.attempts, 1);
    assert.match(String(refused.last_error), /^step 1 POST \/password\/\d+: 403 \{"result":"Forbidden"\} \(refuse_when: failed for good\)$/);
    await f.t.db.query(sql`UPDATE billing.account SET service_password = 'y1' WHERE i_account = ${a!}`);
    const exists = await settled(await eventOf('Account/ServicePassword/Changed', a!), 'DELIVERED');
    assert.equal(exists.last_http_status, 400);
  });

  it('a lookup (GET) feeds the next step; a type without steps is SKIPPED, not sent', async () => {
    const [a] = await addAccounts(f.t.db, f.ids, 1, 'imsi-005-');
    await settled(await eventOf('Account/New', a!), 'DELIVERED');
    await f.t.db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account = ${a!}`);
    await settled(await eventOf('Account/Blocked', a!), 'DELIVERED');
    const sub = [...hss.subscribers.values()].find((s) => s.imsi === 'imsi-005-1')!;
    assert.equal(sub.enabled, false);
    const patch = f.rx.arrived.find((x) => x.method === 'PATCH' && x.path === `/subscriber/${String(sub.subscriber_id)}`);
    assert.ok(patch, 'PATCH by the id the GET answered');
    const get = f.rx.arrived.find((x) => x.method === 'GET' && x.path === `/subscriber/msisdn/49${a}`)!;
    assert.equal(get.body, '', 'a GET has no body');
    const before = f.rx.arrived.length;
    await f.t.db.query(sql`UPDATE billing.account SET blocked = false WHERE i_account = ${a!}`);
    const skipped = await settled(await eventOf('Account/Unblocked', a!), 'SKIPPED');
    assert.equal(skipped.attempts, 0);
    assert.match(String(skipped.last_error), /no request steps for Account\/Unblocked/);
    assert.equal(f.rx.arrived.length, before, 'nothing sent for a skipped type');
    const st = await runEspf(['status', '--json'], { DATABASE_URL: f.t.url });
    assert.equal(st.code, 0, st.stderr);
    assert.ok(JSON.parse(st.stdout).skipped_24h.some((x: { handler: string; event_type: string }) => x.handler === 'HSS' && x.event_type === 'Account/Unblocked'));
  });

  it('a form-encoded body; a secret in a header is redacted in the recorded error', async () => {
    await setSteps(f.t.db, 'HSS', 'Account/Unblocked', [{
      method: 'POST', path: '/crm/unblock', content_type: 'application/x-www-form-urlencoded',
      headers: { Authorization: 'env:ESPF_SECRET_HSS_KEY' },
      body: '{"account": variables.i_account, "note": "unblocked & ok", "tags": ["a", "b"]}',
    }]);
    await stepsSeen('HSS', 'Account/Unblocked', 1);
    let echo = true;
    hss.fail = (r) => r.path === '/crm/unblock' ? (echo ? (echo = false, { status: 500, body: `bad key ${String(r.headers.authorization)}` }) : { status: 200, body: '{}' }) : null;
    const [a] = await addAccounts(f.t.db, f.ids, 1, 'imsi-006-', { blocked: true });
    await f.t.db.query(sql`UPDATE billing.account SET blocked = false WHERE i_account = ${a!}`);
    const iEvent = await eventOf('Account/Unblocked', a!);
    await eventually(async () => (await row(iEvent))?.state === 'RETRY' || (await row(iEvent))?.state === 'DELIVERED', 10_000, 'first attempt recorded');
    const r = await settled(iEvent, 'DELIVERED');
    const sent = f.rx.arrived.filter((x) => x.path === '/crm/unblock' && x.body.includes(`account=${a}`));
    assert.equal(sent.length, 2);
    assert.equal(sent[0]!.headers['content-type'], 'application/x-www-form-urlencoded');
    assert.equal(sent[0]!.body, `account=${a}&note=unblocked+%26+ok&tags=a&tags=b`);
    assert.equal(sent[0]!.headers.authorization, SECRET);
    assert.equal(r.attempts, 2);
    const [h] = await f.t.db.query(sql`SELECT count(*)::int AS n FROM espf.event_deliveries WHERE last_error LIKE ${'%' + SECRET + '%'}`);
    assert.equal(h.n, 0);
    // The first attempt's error was recorded with the secret masked (the account status keeps the last message).
    const logs = readdirSync(f.run.logDir).map((n) => readFileSync(path.join(f.run.logDir, n), 'utf8')).join('');
    assert.ok(!logs.includes(SECRET), 'provisioning.log never holds the secret');
    assert.ok(logs.includes('bad key ***'), 'the echoed key is masked in provisioning.log');
  });

  it('per-account order holds across multi-step events: the block waits for the create to finish', async () => {
    let failures = 0;
    hss.fail = (r) => r.path === '/subscriber/' && r.body.includes('imsi-007-') && failures++ < 2 ? { status: 500, body: '{}' } : null;
    const [a] = await addAccounts(f.t.db, f.ids, 1, 'imsi-007-');
    await f.t.db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account = ${a!}`);
    await settled(await eventOf('Account/Blocked', a!), 'DELIVERED');
    const seq = f.rx.arrived.filter((x) => x.body.includes('imsi-007-') || x.path === `/subscriber/msisdn/49${a}` || /^\/subscriber\/\d+$/.test(x.path) && x.at >= f.rx.arrived.find((y) => y.body.includes('imsi-007-'))!.at)
      .map((x) => `${x.method} ${x.path.replace(/\d+$/, 'N')}`);
    assert.deepEqual(seq, ['PUT /auc/', 'PUT /subscriber/', 'PUT /subscriber/', 'PUT /subscriber/', 'GET /subscriber/msisdn/N', 'PATCH /subscriber/N']);
  });

  it('expressions that do not compile: espf handler check refuses them; at run time that handler waits with the reason, the others go on', async () => {
    await addHttpHandler(f.t.db, 'Broken', rx2.url.replace('/events', ''), ['Account/New']);
    await setSteps(f.t.db, 'Broken', '*', [{ method: 'POST', path: '/x/{variables.i_account}', body: '{"a": variables.}' }]);
    await stepsSeen('Broken', '*', 1);
    const check = await runEspf(['handler', 'check', 'Broken'], { DATABASE_URL: f.t.url });
    assert.equal(check.code, 1, check.stdout + check.stderr);
    assert.match(check.stdout, /^handler Broken, type \*, step 1 \(body\): .*\(S0211 at character 17\)$/m);
    assert.match(check.stderr, /1 expression of handler Broken do not compile/);
    const [a] = await addAccounts(f.t.db, f.ids, 1, 'imsi-008-');
    const iEvent = await eventOf('Account/New', a!);
    await settled(iEvent, 'DELIVERED'); // HSS goes on
    await settled(iEvent, 'PENDING', 'Broken');
    await eventually(async () => (f.run.sender.httpHandlers.get('Broken')?.stepProblems.length ?? 0) > 0, 5000, 'the problem known to the sender');
    const st = await runEspf(['status', '--json'], { DATABASE_URL: f.t.url });
    const broken = JSON.parse(st.stdout).broken_steps as { handler: string; step: number; field: string }[];
    assert.deepEqual(broken.map((b) => `${b.handler} ${b.step} ${b.field}`), ['Broken 1 body']);
    const web = await startHttpServer({ sender: f.run.sender, db: f.t.db, log: f.run.log, port: 0, host: '127.0.0.1' });
    try {
      const health = await (await fetch(`http://127.0.0.1:${web.port}/healthz`)).json() as { ready: boolean; broken_steps: { handler: string; event_type: string; step: number; field: string; problem: string }[] };
      assert.equal(health.ready, true, 'the instance stays ready: the other handlers go on');
      assert.deepEqual(health.broken_steps.map((b) => `${b.handler} ${b.event_type} ${b.step} ${b.field}`), ['Broken * 1 body']);
      assert.match(health.broken_steps[0]!.problem, /S0211/);
    } finally {
      await web.close();
    }
    assert.equal(rx2.arrived.filter((x) => x.path.startsWith('/x/')).length, 0);
    // Mended: what waited goes out.
    await f.t.db.query(sql`UPDATE espf.http_steps SET body = '{"a": variables.i_account}' WHERE handler = 'Broken'`);
    await settled(iEvent, 'DELIVERED', 'Broken');
    assert.equal(rx2.arrived.find((x) => x.path === `/x/${a}`)?.body, JSON.stringify({ a }));
    assert.equal((f.run.sender.httpHandlers.get('Broken')?.stepProblems ?? []).length, 0);
  });

  it('StandardWebhooks auth: each step is signed over its own body, with a webhook-id of its own', async () => {
    const secret = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
    await addHttpHandler(f.t.db, 'Signed', rx2.url.replace('/events', ''), ['Account/New'], { signature_auth_key: secret, auth_method: 'StandardWebhooks' });
    await setSteps(f.t.db, 'Signed', '*', [
      { method: 'PUT', path: '/signed/one', body: '{"a": variables.i_account}' },
      { method: 'PATCH', path: '/signed/two', body: '{"b": steps[0].status}' },
    ]);
    await stepsSeen('Signed', '*', 2);
    const [a] = await addAccounts(f.t.db, f.ids, 1, 'imsi-010-');
    const iEvent = await eventOf('Account/New', a!);
    await settled(iEvent, 'DELIVERED', 'Signed');
    const got = rx2.arrived.filter((x) => x.path.startsWith('/signed/') && String(x.headers['webhook-id']).startsWith(`Signed:${iEvent}-`));
    assert.deepEqual(got.map((x) => x.headers['webhook-id']), [`Signed:${iEvent}-1`, `Signed:${iEvent}-2`]);
    const wh = new Webhook(secret);
    for (const x of got) wh.verify(x.body, x.headers as Record<string, string>);
    assert.equal(got[1]!.body, '{"b":200}');
  });

  it('espf handler check prints a dry run: method, URL, headers with secrets masked, body; nothing is sent', async () => {
    const before = f.rx.arrived.length;
    const [e] = await f.t.db.query(sql`SELECT max(i_event)::int AS i FROM espf.events WHERE event_type = 'Account/New'`);
    const r = await runEspf(['handler', 'check', 'HSS', '--event', String(e.i)], { DATABASE_URL: f.t.url, ESPF_SECRET_HSS_KEY: SECRET });
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes(SECRET));
    assert.match(r.stdout, /step 1 \(auc\): PUT http:\/\/127\.0\.0\.1:\d+\/auc\/\n {4}x-api-key: \*\*\*\n {4}content-type: application\/json\n {4}\{"imsi":"imsi-/);
    assert.match(r.stdout, /step 2 \(sub\): PUT http:\/\/127\.0\.0\.1:\d+\/subscriber\//);
    const all = await runEspf(['handler', 'check', 'HSS'], { DATABASE_URL: f.t.url });
    assert.equal(all.code, 0, all.stderr);
    assert.match(all.stdout, /Account\/Blocked \(/);
    assert.match(all.stdout, /step 2 \(patch\): PATCH .*cannot be rendered: path \{step\.lookup\.body\.subscriber_id\}: has no value/);
    assert.equal(f.rx.arrived.length, before, 'a dry run sends nothing');
    const plain = await runEspf(['handler', 'check', 'EventSender'], { DATABASE_URL: f.t.url });
    assert.match(plain.stdout, /has no request steps/);
    const bad = await runEspf(['handler', 'check', 'HSS', '--event', 'x'], { DATABASE_URL: f.t.url });
    assert.equal(bad.code, 2);
  });
});

describe('request steps: kill -9 of espf run between two steps', function () {
  let hss: FakeHss;
  const f = deliveryFixture({
    types: [],
    sender: false,
    prepare: async (fx) => {
      hss = new FakeHss();
      fx.rx.respond = hss.respond;
    },
    setup: async (fx) => {
      await addHttpHandler(fx.t.db, 'HSS', `http://127.0.0.1:${fx.rx.port}`, ['Account/New']);
      await setSteps(fx.t.db, 'HSS', 'Account/New', CREATE_STEPS);
    },
  });

  it('the answer of step 1 is durable before step 2 is sent; the restart resumes at step 2 with it, step 1 never sent again', async function () {
    this.timeout(90_000);
    hss.fail = (r) => r.path === '/subscriber/' ? 'hang' : null;
    const proc = new EspfProcess(f.t.url);
    let proc2: EspfProcess | undefined;
    try {
      await proc.streaming();
      const accounts = await addAccounts(f.t.db, f.ids, 3, 'crash-imsi-');
      await eventually(async () => f.rx.arrived.filter((x) => x.path === '/subscriber/').length === 3, 20_000, 'step 2 of the three on the wire');
      // Step 2 went out only after step 1's answer was committed with the delivery.
      const mid = await f.t.db.query(sql`SELECT state, steps_done, step_answers FROM espf.event_deliveries WHERE handler = 'HSS' AND i_account = ANY(${accounts})`);
      assert.equal(mid.length, 3);
      for (const m of mid) {
        assert.equal(m.state, 'PENDING');
        assert.equal(m.steps_done, 1);
        assert.equal(typeof m.step_answers[0].body.auc_id, 'number');
      }
      proc.kill('SIGKILL');
      await proc.exited();
      hss.fail = () => null;
      proc2 = new EspfProcess(f.t.url);
      await proc2.streaming();
      await eventually(async () => {
        const [r] = await f.t.db.query(sql`SELECT count(*)::int AS n FROM espf.event_deliveries WHERE handler = 'HSS' AND state = 'DELIVERED' AND i_account = ANY(${accounts})`);
        return r.n === 3;
      }, 30_000, 'three DELIVERED after the restart');
      for (let i = 1; i <= 3; i++) {
        const mine = f.rx.arrived.filter((x) => x.body.includes(`"crash-imsi-${i}"`));
        assert.deepEqual(mine.map((x) => `${x.method} ${x.path}`), ['PUT /auc/', 'PUT /subscriber/', 'PUT /subscriber/'], `account ${i}`);
        const auc = JSON.parse(mine[0]!.body) as { imsi: string };
        const given = [...hss.aucs.entries()].find(([, v]) => v.imsi === auc.imsi)![0];
        assert.equal(JSON.parse(mine[2]!.body).auc_id, given, 'the resumed step 2 carries the auc_id step 1 was given');
      }
    } finally {
      proc.kill('SIGKILL');
      await proc.exited();
      await proc2?.stop();
    }
  });
});

describe('request steps against the example HSS (examples/hss)', function () {
  let hss: Hss;
  const f = deliveryFixture({
    types: [],
    prepare: async () => {
      hss = await startHss({ apiKey: 'prov-key-3c9d1e' });
      process.env.ESPF_SECRET_HSS_PROVISIONING = 'prov-key-3c9d1e';
    },
    setup: async (fx) => {
      await addHttpHandler(fx.t.db, 'PyHss', hss.url, ['Account/New', 'Account/Blocked'], { max_attempts: 5 });
      const key = { 'Provisioning-Key': 'env:ESPF_SECRET_HSS_PROVISIONING' };
      await setSteps(fx.t.db, 'PyHss', 'Account/New', CREATE_STEPS.map((s) => ({ ...s, headers: key })));
      // A block: look the subscriber up by its IMSI (the account id here), then disable it by the id the lookup gave.
      await setSteps(fx.t.db, 'PyHss', 'Account/Blocked', [
        { name: 'lookup', method: 'GET', path: '/subscriber/imsi/{"00101" & $pad($string(variables.i_account), -10, "0")}', headers: key, success_when: 'status = 200 and body != null' },
        { name: 'patch', method: 'PATCH', path: '/subscriber/{step.lookup.body.subscriber_id}', headers: key, body: '{"enabled": false}', success_when: 'status = 200 and body.enabled = false' },
      ]);
    },
  });
  after(async () => {
    await hss?.close();
    delete process.env.ESPF_SECRET_HSS_PROVISIONING;
  });

  it('creates the auc row and the subscriber with its auc_id; step 2 failing twice resumes at step 2; a block disables it', async () => {
    hss.failNext('/subscriber/', 2);
    // The account's id is its IMSI, made from its i_account (so that the block's lookup finds it from i_account alone).
    const [a] = await f.t.db.query(sql`SELECT nextval(pg_get_serial_sequence('billing.account', 'i_account'))::int AS i_account`);
    const imsi = `00101${String(a.i_account).padStart(10, '0')}`;
    await f.t.db.query(sql`INSERT INTO billing.account (i_account, id, i_customer, i_product) VALUES (${a.i_account}, ${imsi}, ${f.ids.i_customer}, ${f.ids.i_product})`);
    await eventually(async () => {
      const [r] = await f.t.db.query(sql`SELECT state FROM espf.event_deliveries d JOIN espf.events e USING (i_event)
                                          WHERE d.handler = 'PyHss' AND e.event_type = 'Account/New' AND e.variables->>'id' = ${imsi}`);
      return r?.state === 'DELIVERED';
    }, 15_000, 'the create DELIVERED');
    const st = hss.state();
    const auc = st.auc.find((x) => x.imsi === imsi)!;
    const sub = st.subscriber.find((x) => x.imsi === imsi)!;
    assert.equal(sub.auc_id, auc.auc_id);
    assert.equal(st.requests.filter((r) => r.path.startsWith('/auc') && (r.body as { imsi?: string })?.imsi === imsi).length, 1, 'step 1 once');
    assert.deepEqual(st.requests.filter((r) => r.path === '/subscriber/' && (r.body as { imsi?: string })?.imsi === imsi).map((r) => r.status), [500, 500, 200]);
    await f.t.db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account = ${a.i_account}`);
    await eventually(async () => hss.state().subscriber.find((x) => x.imsi === imsi)?.enabled === false, 15_000, 'the subscriber disabled');
  });
});
