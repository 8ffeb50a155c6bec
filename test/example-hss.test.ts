// The example HSS (examples/hss) answered with real HTTP requests on 127.0.0.1, built
// here from examples/hss/README.md (undici), not from the server's code; and its
// command started as a real process.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { startHss, type Hss } from '../examples/hss/src/server.ts';

const KI = '465B5CE8B199B49FAA5F0A2EE238A6BC';
const OPC = 'E8ED289DEBA952E4283B54E88E6183CA';

describe('example HSS (examples/hss)', () => {
  const agent = new Agent();
  const started: Hss[] = [];
  after(async () => { await agent.close(); });
  afterEach(async () => { await Promise.all(started.splice(0).map((h) => h.close())); });

  async function start(opts: { apiKey?: string } = {}): Promise<Hss> {
    const h = await startHss(opts);
    started.push(h);
    return h;
  }

  async function call(h: Hss, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: unknown }> {
    const res = await request(`${h.url}${path}`, {
      method: method as 'GET', dispatcher: agent,
      headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.body.text();
    assert.match(String(res.headers['content-type']), /^application\/json/);
    return { status: res.statusCode, json: JSON.parse(text) };
  }

  async function aucAndSubscriber(h: Hss, imsi = '001010000000001', msisdn = '15550001'): Promise<{ auc_id: number; subscriber_id: number }> {
    const a = await call(h, 'PUT', '/auc/', { ki: KI, opc: OPC, amf: '8000', imsi });
    assert.equal(a.status, 200, JSON.stringify(a.json));
    const { auc_id } = a.json as { auc_id: number };
    const s = await call(h, 'PUT', '/subscriber/', { imsi, msisdn, auc_id });
    assert.equal(s.status, 200, JSON.stringify(s.json));
    return { auc_id, subscriber_id: (s.json as { subscriber_id: number }).subscriber_id };
  }

  it('PUT /auc/ answers the row with a server-assigned auc_id; GET /auc/imsi/{imsi} finds it, or answers 200 null', async () => {
    const h = await start();
    const a = await call(h, 'PUT', '/auc/', { ki: KI.toLowerCase(), opc: OPC, amf: '8000', imsi: '001010000000001' });
    assert.deepEqual(a, { status: 200, json: { auc_id: 1, ki: KI, opc: OPC, amf: '8000', imsi: '001010000000001', sqn: 1 } });
    const b = await call(h, 'PUT', '/auc', { ki: KI, opc: OPC, amf: '8000', imsi: '001010000000002' });
    assert.equal((b.json as { auc_id: number }).auc_id, 2);
    assert.deepEqual(await call(h, 'GET', '/auc/imsi/001010000000001'), a);
    assert.deepEqual(await call(h, 'GET', '/auc/1'), a);
    assert.deepEqual(await call(h, 'GET', '/auc/imsi/001019999999999'), { status: 200, json: null });
    assert.deepEqual(await call(h, 'GET', '/auc/77'), { status: 200, json: null });
  });

  it('a duplicate imsi, a bad field or a body that is not JSON: 400 {"result":"Failed"}, nothing changes', async () => {
    const h = await start();
    await call(h, 'PUT', '/auc/', { ki: KI, opc: OPC, amf: '8000', imsi: '001010000000001' });
    const before = h.state();
    for (const body of [
      { ki: KI, opc: OPC, amf: '8000', imsi: '001010000000001' },
      { ki: 'xyz', opc: OPC, amf: '8000', imsi: '001010000000003' },
      { ki: KI, opc: OPC, amf: '8000' },
      { ki: KI, opc: OPC, amf: '8000', imsi: '001010000000004', colour: 'red' },
      'not json',
    ]) {
      const r = await call(h, 'PUT', '/auc/', body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal((r.json as { result: string }).result, 'Failed');
    }
    assert.deepEqual(h.state().auc, before.auc);
  });

  it('PUT /subscriber/: row with subscriber_id and enabled true by default; duplicate imsi or unknown auc_id: 400', async () => {
    const h = await start();
    const { auc_id, subscriber_id } = await aucAndSubscriber(h);
    assert.equal(subscriber_id, 1);
    assert.deepEqual(await call(h, 'GET', '/subscriber/imsi/001010000000001'),
      { status: 200, json: { subscriber_id: 1, imsi: '001010000000001', msisdn: '15550001', auc_id, enabled: true } });
    const dup = await call(h, 'PUT', '/subscriber/', { imsi: '001010000000001', msisdn: '15550002', auc_id });
    assert.deepEqual([dup.status, (dup.json as { result: string }).result], [400, 'Failed']);
    const unknown = await call(h, 'PUT', '/subscriber/', { imsi: '001010000000009', msisdn: '15550009', auc_id: 99 });
    assert.deepEqual([unknown.status, (unknown.json as { result: string }).result], [400, 'Failed']);
    const disabled = await call(h, 'PUT', '/subscriber/', { imsi: '001010000000005', msisdn: '15550005', auc_id, enabled: false });
    assert.equal((disabled.json as { enabled: boolean }).enabled, false);
    assert.deepEqual(await call(h, 'GET', '/subscriber/imsi/001010000000008'), { status: 200, json: null });
    assert.equal(h.state().subscriber.length, 2);
  });

  it('PATCH /subscriber/{id} changes enabled and msisdn only; an unknown id answers 200 null', async () => {
    const h = await start();
    const { auc_id, subscriber_id } = await aucAndSubscriber(h);
    const p = await call(h, 'PATCH', `/subscriber/${subscriber_id}`, { enabled: false });
    assert.deepEqual(p, { status: 200, json: { subscriber_id, imsi: '001010000000001', msisdn: '15550001', auc_id, enabled: false } });
    const q = await call(h, 'PATCH', `/subscriber/${subscriber_id}`, { msisdn: '15559999', enabled: true });
    assert.deepEqual(q.json, { subscriber_id, imsi: '001010000000001', msisdn: '15559999', auc_id, enabled: true });
    assert.deepEqual(await call(h, 'PATCH', '/subscriber/42', { enabled: false }), { status: 200, json: null });
    const bad = await call(h, 'PATCH', `/subscriber/${subscriber_id}`, { imsi: '001010000000002' });
    assert.equal(bad.status, 400);
    const badEnabled = await call(h, 'PATCH', `/subscriber/${subscriber_id}`, { enabled: 'no', msisdn: '15550000' });
    assert.equal(badEnabled.status, 400);
    assert.deepEqual(h.state().subscriber, [q.json]);
  });

  it('DELETE answers {"result":"OK"}, then 200 null; an auc in use by a subscriber is not deleted', async () => {
    const h = await start();
    const { auc_id, subscriber_id } = await aucAndSubscriber(h);
    const inUse = await call(h, 'DELETE', `/auc/${auc_id}`);
    assert.deepEqual([inUse.status, (inUse.json as { result: string }).result], [400, 'Failed']);
    assert.deepEqual(await call(h, 'DELETE', `/subscriber/${subscriber_id}`), { status: 200, json: { result: 'OK' } });
    assert.deepEqual(await call(h, 'DELETE', `/subscriber/${subscriber_id}`), { status: 200, json: null });
    assert.deepEqual(await call(h, 'DELETE', `/auc/${auc_id}`), { status: 200, json: { result: 'OK' } });
    assert.deepEqual(await call(h, 'DELETE', `/auc/${auc_id}`), { status: 200, json: null });
    assert.deepEqual(h.state().auc, []);
    assert.deepEqual(h.state().subscriber, []);
  });

  it('with an API key, a request without Provisioning-Key or with another one gets 401 and changes nothing', async () => {
    const h = await start({ apiKey: 'k3y-for-tests' });
    const body = { ki: KI, opc: OPC, amf: '8000', imsi: '001010000000001' };
    assert.equal((await call(h, 'PUT', '/auc/', body)).status, 401);
    assert.equal((await call(h, 'PUT', '/auc/', body, { 'Provisioning-Key': 'k3y-for-test' })).status, 401);
    assert.equal((await call(h, 'GET', '/auc/imsi/001010000000001')).status, 401);
    assert.deepEqual(h.state().auc, []);
    assert.equal((await call(h, 'PUT', '/auc/', body, { 'Provisioning-Key': 'k3y-for-tests' })).status, 200);
    assert.equal(h.state().auc.length, 1);
  });

  it('failNext(path, n): the next n requests of that path get 500 and change nothing; then it answers again', async () => {
    const h = await start();
    const { auc_id } = await aucAndSubscriber(h);
    h.failNext('/subscriber/', 2);
    const body = { imsi: '001010000000002', msisdn: '15550002', auc_id };
    assert.equal((await call(h, 'GET', '/subscriber/1')).status, 200, 'another path is not failed');
    assert.deepEqual(await call(h, 'PUT', '/subscriber/', body), { status: 500, json: { result: 'Failed', reason: 'injected failure' } });
    assert.equal((await call(h, 'PUT', '/subscriber/', body)).status, 500);
    assert.equal(h.state().subscriber.length, 1);
    assert.equal((await call(h, 'PUT', '/subscriber/', body)).status, 200);
    // A pattern ending in "*", and the same over HTTP.
    assert.deepEqual(await call(h, 'POST', '/_fail', { path: '/subscriber/*', n: 1 }), { status: 200, json: { result: 'OK' } });
    assert.equal((await call(h, 'PATCH', '/subscriber/2', { enabled: false })).status, 500);
    assert.equal((await call(h, 'PATCH', '/subscriber/2', { enabled: false })).status, 200);
    const requests = h.state().requests.filter((r) => r.path === '/subscriber/');
    assert.deepEqual(requests.map((r) => r.status), [200, 500, 500, 200]);
    assert.deepEqual(requests[1]!.body, body, 'the body of a failed request is kept');
  });

  it('GET /_state shows both tables and the requests so far', async () => {
    const h = await start();
    await aucAndSubscriber(h);
    const s = await call(h, 'GET', '/_state');
    assert.equal(s.status, 200);
    assert.deepEqual(s.json, JSON.parse(JSON.stringify(h.state())));
    const st = s.json as { auc: unknown[]; subscriber: unknown[]; requests: { method: string; path: string }[] };
    assert.equal(st.auc.length, 1);
    assert.equal(st.subscriber.length, 1);
    assert.deepEqual(st.requests.map((r) => `${r.method} ${r.path}`), ['PUT /auc/', 'PUT /subscriber/']);
  });

  it('an unknown path answers 404 and a method a path does not offer 405', async () => {
    const h = await start();
    assert.equal((await call(h, 'GET', '/apn/1')).status, 404);
    assert.equal((await call(h, 'POST', '/auc/', {})).status, 405);
    assert.equal((await call(h, 'PATCH', '/auc/1', {})).status, 405);
  });

  it('main.ts: started as a process with PORT and HSS_PROVISIONING_KEY, it listens and checks the key', async () => {
    const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
    const child = spawn(process.execPath, ['--import', 'tsx', 'examples/hss/main.ts'], {
      cwd: root, env: { ...process.env, PORT: '0', HSS_PROVISIONING_KEY: 'from-env-key' }, stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const [line] = await once(createInterface({ input: child.stdout! }), 'line') as [string];
      const { url } = JSON.parse(line) as { url: string };
      const h = { url } as Hss;
      assert.equal((await call(h, 'GET', '/auc/1')).status, 401);
      assert.deepEqual(await call(h, 'GET', '/auc/1', undefined, { 'provisioning-key': 'from-env-key' }), { status: 200, json: null });
    } finally {
      child.kill('SIGTERM');
      const [code] = await once(child, 'exit');
      assert.equal(code, 0);
    }
  });
});
