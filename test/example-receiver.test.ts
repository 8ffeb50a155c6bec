// The example receiver (examples/receiver) answered with real HTTP requests. The requests
// are built here, independently of the receiver's code: Basic / Custom / Signature headers
// straight from examples/receiver/README.md with node:crypto, sent with undici.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { Agent, request } from 'undici';
import { configFromEnv } from '../examples/receiver/src/config.ts';
import { createReceiver, type LogEntry, type Receiver, type ReceiverOptions } from '../examples/receiver/src/server.ts';

interface Reply {
  status: number;
  body: Record<string, unknown>;
  headers: Record<string, string | string[] | undefined>;
}

let nextEvent = 1000;
const newEventId = (): number => ++nextEvent;

function event(type: string, vars: Record<string, unknown> = {}): Record<string, unknown> {
  return { event_type: type, variables: { i_event: newEventId(), i_env: 1, event_time: '2026-11-25 21:40:07', ...vars } };
}

const basicHeader = (user: string, key: string): string => `Basic ${Buffer.from(`${user}:${key}`, 'utf8').toString('base64')}`;

function signatureHeader(keyId: string, key: string, date: string, algorithm = 'hmac-sha1'): string {
  const sig = createHmac('sha1', key).update(`date: ${date}`).digest('base64');
  return `Signature keyId="${keyId}",algorithm="${algorithm}",headers="date",signature="${sig}"`;
}

const httpDate = (ms: number): string => new Date(ms).toUTCString();

describe('example receiver (examples/receiver)', () => {
  const agent = new Agent();
  const started: Receiver[] = [];

  async function start(options: ReceiverOptions = {}): Promise<{ r: Receiver; url: string; logs: LogEntry[] }> {
    const logs: LogEntry[] = [];
    const r = createReceiver({ log: (e) => logs.push(e), ...options });
    started.push(r);
    const address = await r.listen(0, '127.0.0.1');
    return { r, url: `http://127.0.0.1:${address.port}/espf`, logs };
  }

  async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Reply> {
    const res = await request(url, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json', date: httpDate(Date.now()), ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    const text = await res.body.text();
    return { status: res.statusCode, body: JSON.parse(text) as Record<string, unknown>, headers: res.headers };
  }

  afterEach(async () => {
    await Promise.all(started.splice(0).map((r) => r.close()));
  });
  after(async () => {
    await agent.close();
  });

  describe('auth None', () => {
    it('accepts a request without credentials and logs what it would provision', async () => {
      const { r, url, logs } = await start();
      const ev = event('Account/Blocked', { i_account: 42 });
      const res = await post(url, ev);
      assert.equal(res.status, 200);
      assert.equal(res.body.status, 'processed');
      assert.deepEqual(res.body.actions, ['would set HSS subscriber 42 barred']);
      assert.equal(r.processed.length, 1);
      assert.equal(r.processed[0]?.event_type, 'Account/Blocked');
      assert.ok(logs.some((l) => l.action === 'would set HSS subscriber 42 barred' && l.i_event === (ev.variables as { i_event: number }).i_event));
    });
  });

  describe('auth Basic', () => {
    const auth = { method: 'Basic', user: 'espf', key: 'pa:ss wörd' } as const;

    it('accepts the right user and key', async () => {
      const { r, url } = await start({ auth });
      const res = await post(url, event('Account/Unblocked', { i_account: 7 }), { authorization: basicHeader('espf', 'pa:ss wörd') });
      assert.equal(res.status, 200);
      assert.equal(r.processed.length, 1);
    });

    for (const [what, headers] of [
      ['a wrong key', { authorization: basicHeader('espf', 'pa:ss word') }],
      ['a wrong user', { authorization: basicHeader('espF', 'pa:ss wörd') }],
      ['no auth header', {}],
      ['another scheme', { authorization: `Bearer ${Buffer.from('espf:pa:ss wörd').toString('base64')}` }],
    ] as const) {
      it(`refuses ${what} with 401 and a JSON reason, provisioning nothing`, async () => {
        const { r, url } = await start({ auth });
        const res = await post(url, event('Account/Blocked', { i_account: 42 }), headers);
        assert.equal(res.status, 401);
        assert.equal(res.body.error, 'unauthorized');
        assert.equal(typeof res.body.reason, 'string');
        assert.ok((res.body.reason as string).length > 0);
        assert.equal(res.headers['www-authenticate'], 'Basic realm="espf"');
        assert.equal(r.processed.length, 0);
      });
    }

    it('reads the credentials from the configured auth header', async () => {
      const { r, url } = await start({ auth, authHeader: 'X-Espf-Auth' });
      const right = basicHeader('espf', 'pa:ss wörd');
      assert.equal((await post(url, event('Customer/New', { i_customer: 3 }), { authorization: right })).status, 401);
      assert.equal((await post(url, event('Customer/New', { i_customer: 3 }), { 'x-espf-auth': right })).status, 200);
      assert.equal(r.processed.length, 1);
    });
  });

  describe('auth Custom', () => {
    const auth = { method: 'Custom', type: 'Token', credentials: 'abc 123' } as const;

    it('accepts "<type> <credentials>"', async () => {
      const { r, url } = await start({ auth });
      const res = await post(url, event('Customer/Blocked', { i_customer: 5 }), { authorization: 'Token abc 123' });
      assert.equal(res.status, 200);
      assert.equal(r.processed.length, 1);
    });

    for (const [what, value] of [
      ['wrong credentials', 'Token abc 124'],
      ['a wrong type', 'Bearer abc 123'],
      ['credentials without the type', 'abc 123'],
    ] as const) {
      it(`refuses ${what}`, async () => {
        const { r, url } = await start({ auth });
        const res = await post(url, event('Customer/Blocked', { i_customer: 5 }), { authorization: value });
        assert.equal(res.status, 401);
        assert.equal(typeof res.body.reason, 'string');
        assert.equal(r.processed.length, 0);
      });
    }
  });

  describe('auth Signature (draft-cavage, hmac-sha1 over "date: <Date>")', () => {
    const auth = { method: 'Signature', keys: { 'key-1': 's3cret', 'key-2': 'other' } } as const;

    it('accepts a signature made with the key of its keyId', async () => {
      const { r, url } = await start({ auth });
      for (const [keyId, key] of [['key-1', 's3cret'], ['key-2', 'other']] as const) {
        const date = httpDate(Date.now());
        const res = await post(url, event('Account/Blocked', { i_account: 42 }), { date, authorization: signatureHeader(keyId, key, date) });
        assert.equal(res.status, 200, JSON.stringify(res.body));
      }
      assert.equal(r.processed.length, 2);
    });

    it('accepts a Date four minutes off either way', async () => {
      const { r, url } = await start({ auth });
      for (const offset of [-4 * 60_000, 4 * 60_000]) {
        const date = httpDate(Date.now() + offset);
        const res = await post(url, event('Account/Blocked', { i_account: 42 }), { date, authorization: signatureHeader('key-1', 's3cret', date) });
        assert.equal(res.status, 200, JSON.stringify(res.body));
      }
      assert.equal(r.processed.length, 2);
    });

    it('verifies the worked example of the README with a frozen clock', async () => {
      const date = 'Wed, 25 Nov 2026 21:40:07 GMT';
      const { r, url } = await start({ auth: { method: 'Signature', keys: { demo: 'demo-key' } }, now: () => Date.parse(date) + 30_000 });
      const value = 'Signature keyId="demo",algorithm="hmac-sha1",headers="date",signature="k/1T0T5j++ju1xso3TtL3QAGRt0="';
      const res = await post(url, event('Account/Blocked', { i_account: 42 }), { date, authorization: value });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(r.processed.length, 1);
    });

    const now = (): number => Date.now();
    const cases: Array<[string, () => Record<string, string>]> = [
      ['a wrong key', () => { const date = httpDate(now()); return { date, authorization: signatureHeader('key-1', 'other', date) }; }],
      ['an unknown keyId', () => { const date = httpDate(now()); return { date, authorization: signatureHeader('key-3', 's3cret', date) }; }],
      ['a stale Date (six minutes old)', () => { const date = httpDate(now() - 6 * 60_000); return { date, authorization: signatureHeader('key-1', 's3cret', date) }; }],
      ['a Date six minutes ahead', () => { const date = httpDate(now() + 6 * 60_000); return { date, authorization: signatureHeader('key-1', 's3cret', date) }; }],
      ['a Date other than the one signed', () => ({ date: httpDate(now()), authorization: signatureHeader('key-1', 's3cret', httpDate(now() - 60_000)) })],
      ['another algorithm', () => { const date = httpDate(now()); return { date, authorization: signatureHeader('key-1', 's3cret', date, 'hmac-sha256') }; }],
      ['a signature over other headers', () => {
        const date = httpDate(now());
        return { date, authorization: signatureHeader('key-1', 's3cret', date).replace('headers="date"', 'headers="(request-target) date"') };
      }],
      ['a malformed Signature header', () => ({ date: httpDate(now()), authorization: 'Signature keyId=key-1,signature=abc' })],
      ['Basic credentials', () => ({ authorization: basicHeader('key-1', 's3cret') })],
      ['an unparseable Date', () => ({ date: 'yesterday', authorization: signatureHeader('key-1', 's3cret', 'yesterday') })],
    ];
    for (const [what, headers] of cases) {
      it(`refuses ${what} with 401`, async () => {
        const { r, url } = await start({ auth });
        const res = await post(url, event('Account/Blocked', { i_account: 42 }), headers());
        assert.equal(res.status, 401, JSON.stringify(res.body));
        assert.equal(res.body.error, 'unauthorized');
        assert.equal(typeof res.body.reason, 'string');
        assert.equal(r.processed.length, 0);
      });
    }
  });

  describe('body', () => {
    for (const [what, body] of [
      ['not JSON', '{"event_type": "Account/Blocked", '],
      ['a JSON array', '[]'],
      ['missing event_type', JSON.stringify({ variables: { i_event: 1, i_account: 42 } })],
      ['missing variables', JSON.stringify({ event_type: 'Account/Blocked' })],
      ['missing variables.i_event', JSON.stringify({ event_type: 'Account/Blocked', variables: { i_account: 42 } })],
      ['a fractional i_event', JSON.stringify({ event_type: 'Account/Blocked', variables: { i_event: 1.5, i_account: 42 } })],
    ] as const) {
      it(`answers 400 with a reason to a body ${what}`, async () => {
        const { r, url } = await start();
        const res = await post(url, body);
        assert.equal(res.status, 400);
        assert.equal(res.body.error, 'bad request');
        assert.equal(typeof res.body.reason, 'string');
        assert.equal(r.processed.length, 0);
      });
    }

    it('checks auth before the body', async () => {
      const { url } = await start({ auth: { method: 'Basic', user: 'u', key: 'k' } });
      assert.equal((await post(url, 'not json', { authorization: basicHeader('u', 'x') })).status, 401);
      assert.equal((await post(url, 'not json', { authorization: basicHeader('u', 'k') })).status, 400);
    });

    it('answers 413 to a body over the limit', async () => {
      const { r, url } = await start({ maxBodyBytes: 100 });
      const res = await post(url, event('Account/New', { i_account: 1, id: 'x'.repeat(200) }));
      assert.equal(res.status, 413);
      assert.equal(r.processed.length, 0);
    });

    it('acknowledges a type it has no mapping for without provisioning anything', async () => {
      const { r, url } = await start();
      const res = await post(url, event('Account/Teleported', { i_account: 1 }));
      assert.equal(res.status, 200);
      assert.deepEqual(res.body.actions, []);
      assert.deepEqual(r.processed[0]?.actions, []);
    });
  });

  describe('deduplication on variables.i_event', () => {
    it('answers 200 to a repeat and provisions once', async () => {
      const calls: string[] = [];
      const { r, url, logs } = await start({ provision: (e) => { calls.push(e.i_event); } });
      const ev = event('Account/SIMCardAssignment', { i_account: 42, imsi: '001010000000042', prev_imsi: null });
      const first = await post(url, ev);
      const second = await post(url, ev);
      assert.equal(first.status, 200);
      assert.equal(first.body.status, 'processed');
      assert.deepEqual(first.body.actions, ['would attach IMSI 001010000000042 to HSS subscriber 42']);
      assert.equal(second.status, 200);
      assert.equal(second.body.status, 'duplicate');
      assert.equal(calls.length, 1);
      assert.equal(r.processed.length, 1);
      assert.equal(logs.filter((l) => l.msg === 'would provision').length, 1);
    });

    it('treats the same i_event with another type or as a string as a repeat', async () => {
      const { r, url } = await start();
      const id = newEventId();
      assert.equal((await post(url, { event_type: 'Account/Blocked', variables: { i_event: id, i_account: 1 } })).body.status, 'processed');
      assert.equal((await post(url, { event_type: 'Account/Unblocked', variables: { i_event: String(id), i_account: 1 } })).body.status, 'duplicate');
      assert.equal(r.processed.length, 1);
    });

    it('a repeat arriving while the first is still being provisioned waits for it and is not provisioned again', async () => {
      let release!: () => void;
      const gate = new Promise<void>((resolve) => { release = resolve; });
      let calls = 0;
      const ev = event('Account/Blocked', { i_account: 42 });
      const iEvent = (ev.variables as { i_event: number }).i_event;
      let received = 0;
      let bothReceived!: () => void;
      const bothArrived = new Promise<void>((resolve) => { bothReceived = resolve; });
      const { r, url } = await start({
        provision: async () => { calls += 1; await gate; },
        log: (e) => { if (e.msg === 'received' && e.i_event === iEvent && ++received === 2) bothReceived(); },
      });
      const first = post(url, ev);
      const second = post(url, ev);
      await bothArrived; // both are inside the receiver; the first is blocked in provision
      release();
      const [a, b] = await Promise.all([first, second]);
      assert.deepEqual([a.status, b.status], [200, 200]);
      assert.deepEqual([a.body.status, b.body.status].sort(), ['duplicate', 'processed']);
      assert.equal(calls, 1);
      assert.equal(r.processed.length, 1);
    });

    it('does not remember an event whose provisioning failed: 500, then the retry provisions it', async () => {
      let calls = 0;
      const { r, url } = await start({ provision: () => { calls += 1; if (calls === 1) throw new Error('HSS unreachable'); } });
      const ev = event('Account/ZeroAvailableFunds', { i_account: 9 });
      const first = await post(url, ev);
      assert.equal(first.status, 500);
      assert.equal(r.processed.length, 0);
      const retry = await post(url, ev);
      assert.equal(retry.status, 200);
      assert.equal(retry.body.status, 'processed');
      const again = await post(url, ev);
      assert.equal(again.body.status, 'duplicate');
      assert.equal(calls, 2);
      assert.equal(r.processed.length, 1);
    });

    it('is bounded: the least recently seen i_event is forgotten first', async () => {
      const { r, url } = await start({ dedupCapacity: 2 });
      const [e1, e2, e3] = [event('Customer/New', { i_customer: 1 }), event('Customer/New', { i_customer: 2 }), event('Customer/New', { i_customer: 3 })];
      await post(url, e1);
      await post(url, e2);
      assert.equal((await post(url, e1)).body.status, 'duplicate'); // e1 is now the most recent
      await post(url, e3); // evicts e2
      assert.equal((await post(url, e1)).body.status, 'duplicate');
      assert.equal((await post(url, e2)).body.status, 'processed');
      assert.equal(r.processed.length, 4);
    });
  });

  describe('configuration from the environment', () => {
    it('defaults to port 8080, no auth, the Authorization header', () => {
      const c = configFromEnv({});
      assert.equal(c.port, 8080);
      assert.deepEqual(c.options.auth, { method: 'None' });
      assert.equal(c.options.authHeader, 'Authorization');
    });

    it('reads each auth method', () => {
      assert.deepEqual(configFromEnv({ AUTH_METHOD: 'Basic', BASIC_USER: 'u', BASIC_KEY: 'k' }).options.auth, { method: 'Basic', user: 'u', key: 'k' });
      assert.deepEqual(configFromEnv({ AUTH_METHOD: 'Custom', CUSTOM_TYPE: 'T', CUSTOM_CREDENTIALS: 'c' }).options.auth, { method: 'Custom', type: 'T', credentials: 'c' });
      assert.deepEqual(configFromEnv({ AUTH_METHOD: 'Signature', SIGNATURE_KEY_ID: 'id', SIGNATURE_KEY: 'k' }).options.auth, { method: 'Signature', keys: { id: 'k' } });
      const c = configFromEnv({ PORT: '9000', AUTH_HEADER: 'X-Auth' });
      assert.equal(c.port, 9000);
      assert.equal(c.options.authHeader, 'X-Auth');
    });

    it('refuses an unknown method, missing credentials and a bad port', () => {
      assert.throws(() => configFromEnv({ AUTH_METHOD: 'basic' }), /AUTH_METHOD must be/);
      assert.throws(() => configFromEnv({ AUTH_METHOD: 'Basic', BASIC_USER: 'u' }), /BASIC_KEY/);
      assert.throws(() => configFromEnv({ AUTH_METHOD: 'Signature', SIGNATURE_KEY: 'k' }), /SIGNATURE_KEY_ID/);
      assert.throws(() => configFromEnv({ PORT: 'eighty' }), /PORT/);
    });
  });
});
