// auth_method = 'StandardWebhooks': every request espf run sends to a real
// receiver on 127.0.0.1 is checked with the specification's published verifier
// (npm standardwebhooks, `new Webhook(secret).verify(body, headers)`), not with
// espf's own code; the webhook-id stays the same across a retry; another secret
// does not verify; the database refuses a row without a proper secret.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { sql, type SQLQuery } from '@databases/pg';
import { Webhook, WebhookVerificationError } from 'standardwebhooks';
import { deliveryFixture } from './support/fixture.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { sendTestEvent } from '../src/console/test-event.ts';
import { eventually, TestReceiver, type Received } from './support/receiver.ts';

const SECRET = `whsec_${randomBytes(32).toString('base64')}`;
const OTHER = `whsec_${randomBytes(32).toString('base64')}`;
const ENV_NAME = 'ESPF_SECRET_TEST_WEBHOOKS';

/** The three headers as the verifier takes them. */
function webhookHeaders(r: Received): Record<string, string> {
  return { 'webhook-id': String(r.headers['webhook-id']), 'webhook-timestamp': String(r.headers['webhook-timestamp']), 'webhook-signature': String(r.headers['webhook-signature']) };
}

describe('auth StandardWebhooks: espf run signs every request as the specification says', function () {
  /** Accounts whose events the receiver answers 500 at the first request of each (echoing the secret), then 200. */
  const failFirst = new Set<number>();
  const f = deliveryFixture({
    types: ['Account/New', 'Account/Blocked'],
    // The key first: the database refuses StandardWebhooks without it. A mapped name puts non-ASCII bytes in the body.
    settings: { signature_auth_key: SECRET, auth_method: 'StandardWebhooks', event_names: JSON.stringify({ 'Account/Blocked': 'compte/bloqué' }) },
    setup: async (fx) => {
      fx.rx.respond = (r) => {
        const a = Number(r.json.variables.i_account);
        if (failFirst.has(a) && fx.rx.arrived.filter((x) => x.json.variables.i_event === r.json.variables.i_event).length === 1) {
          return { status: 500, body: `{"error":"not now","echo":"${SECRET}"}` };
        }
        return { status: 200 };
      };
    },
  });

  async function newAccount(id: string): Promise<number> {
    const [a] = await f.t.db.query(sql`INSERT INTO billing.account (id, i_customer, i_product) VALUES (${id}, ${f.ids.i_customer}, ${f.ids.i_product}) RETURNING i_account`);
    return a.i_account;
  }

  it('sends webhook-id, webhook-timestamp and webhook-signature that the published verifier accepts', async () => {
    const a = await newAccount('swh-1');
    await f.t.db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account = ${a}`);
    await f.rx.waitFor(() => f.rx.received.filter((r) => r.json.variables.i_account === a).length === 2, 10_000, 'Account/New and Account/Blocked');
    const events = await f.t.db.query(sql`SELECT i_event, event_type FROM espf.events WHERE (variables->>'i_account')::int = ${a} ORDER BY i_event`);
    assert.equal(events.length, 2);
    const wh = new Webhook(SECRET);
    for (const r of f.rx.received.filter((x) => x.json.variables.i_account === a)) {
      const payload = wh.verify(r.body, webhookHeaders(r)) as { event_type: string };
      assert.equal(payload.event_type, r.json.event_type);
      const e = events.find((x) => x.i_event === r.json.variables.i_event)!;
      assert.equal(r.headers['webhook-id'], `EventSender:${e.i_event}`);
      assert.ok(Math.abs(Number(r.headers['webhook-timestamp']) - r.at / 1000) < 5, 'the timestamp is the time of the attempt');
      assert.match(String(r.headers['webhook-signature']), /^v1,[A-Za-z0-9+/]{43}=$/);
      assert.equal(r.headers.authorization, undefined, 'no Authorization header besides the three');
    }
    const blocked = f.rx.received.find((x) => x.json.variables.i_account === a && x.json.event_type === 'compte/bloqué');
    assert.ok(blocked, 'the mapped, non-ASCII event name went out signed');
  });

  it('another secret, a changed body or a changed id does not verify (the check can fail)', async () => {
    const r = f.rx.received[0]!;
    assert.throws(() => new Webhook(OTHER).verify(r.body, webhookHeaders(r)), WebhookVerificationError);
    assert.throws(() => new Webhook(SECRET).verify(r.body.replace('}', ' }'), webhookHeaders(r)), WebhookVerificationError);
    assert.throws(() => new Webhook(SECRET).verify(r.body, { ...webhookHeaders(r), 'webhook-id': `${String(r.headers['webhook-id'])}0` }), WebhookVerificationError);
  });

  it('a retry carries the same webhook-id, signed again at its own time, and verifies', async () => {
    const a = await newAccount('swh-retry');
    failFirst.add(a);
    // Account/New may have gone out before failFirst knew the account: the blocked event comes after, and fails first.
    await f.t.db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account = ${a}`);
    await f.rx.waitFor(() => f.rx.received.some((r) => r.json.variables.i_account === a && r.json.event_type === 'compte/bloqué'), 10_000, 'the blocked event, delivered');
    const first = f.rx.arrived.find((r) => r.json.variables.i_account === a && r.json.event_type === 'compte/bloqué')!;
    const again = f.rx.arrived.filter((r) => r.json.variables.i_event === first.json.variables.i_event);
    assert.equal(again.length, 2, 'answered 500, then retried and answered 200');
    const wh = new Webhook(SECRET);
    for (const r of again) wh.verify(r.body, webhookHeaders(r));
    assert.equal(new Set(again.map((r) => r.headers['webhook-id'])).size, 1, 'one webhook-id across the attempts');
    assert.equal(again[0]!.headers['webhook-id'], `EventSender:${first.json.variables.i_event}`);
    const d = await eventually(async () => {
      const [row] = await f.t.db.query(sql`SELECT * FROM espf.event_deliveries WHERE i_event = ${first.json.variables.i_event} AND state = 'DELIVERED'`);
      return row;
    }, 10_000, 'the retried delivery recorded');
    assert.equal(d.attempts, 2);
  });

  it('a secret from env:ESPF_SECRET_… signs; one of another form fails the attempt without showing it', async () => {
    process.env[ENV_NAME] = OTHER;
    try {
      await f.t.db.query(sql`UPDATE espf.http_handlers SET signature_auth_key = ${`env:${ENV_NAME}`} WHERE handler = 'EventSender'`);
      // The new secret is in use once a request verifies under it (the configuration poll is asynchronous).
      let n = 0;
      const r = await eventually(async () => {
        const a = await newAccount(`swh-env-${n++}`);
        await f.rx.waitFor(() => f.rx.received.some((x) => x.json.variables.i_account === a), 10_000, `account ${a}`);
        const got = f.rx.received.find((x) => x.json.variables.i_account === a)!;
        try { new Webhook(OTHER).verify(got.body, webhookHeaders(got)); return got; } catch { return undefined; }
      }, 10_000, 'a request signed with the secret of the environment');
      assert.throws(() => new Webhook(SECRET).verify(r.body, webhookHeaders(r)), WebhookVerificationError);

      const bad = 'not-a-webhook-secret-value';
      process.env[ENV_NAME] = bad;
      const a = await newAccount('swh-env-bad');
      const row = await eventually(async () => {
        const [x] = await f.t.db.query(sql`SELECT d.* FROM espf.event_deliveries d JOIN espf.events e USING (i_event)
                                            WHERE (e.variables->>'i_account')::int = ${a} AND d.last_error IS NOT NULL`);
        return x;
      }, 10_000, 'a failed attempt recorded');
      assert.match(row.last_error, /signature_auth_key is not a Standard Webhooks secret/);
      assert.ok(!row.last_error.includes(bad), 'the value is not shown');
      assert.ok(!f.rx.arrived.some((x) => x.json.variables.i_account === a), 'nothing was sent');
    } finally {
      process.env[ENV_NAME] = OTHER;
    }
  });

  it('the secret a receiver echoes back never reaches provisioning.log', async () => {
    await f.run.stop();
    const log = readFileSync(path.join(f.run.logDir, 'provisioning.log'), 'utf8');
    const failed = log.trim().split('\n').map((l) => JSON.parse(l)).filter((l) => l.status === 500);
    assert.ok(failed.length >= 1, 'the 500 answer is logged');
    assert.ok(failed.every((l) => String(l.error).includes('***')), 'with the echoed secret masked');
    assert.ok(!log.includes(SECRET) && !log.includes(SECRET.slice('whsec_'.length)), 'the secret is in no line');
    delete process.env[ENV_NAME];
  });
});

describe('auth StandardWebhooks: the database refuses a row without a proper secret', () => {
  let t: TestDatabase;
  const row = async () => (await t.db.query(sql`SELECT to_jsonb(h) AS h FROM espf.http_handlers h WHERE handler = 'EventSender'`))[0].h;

  before(async () => { t = await createTestDatabase(); });
  after(async () => { await t.drop(); });

  async function refused(set: SQLQuery, secret: string | null): Promise<void> {
    const before = await row();
    const err = await t.db.query(sql`UPDATE espf.http_handlers SET ${set} WHERE handler = 'EventSender'`).then(() => undefined, (e: Error & { code?: string }) => e);
    assert.ok(err, 'refused');
    assert.equal(err.code, '23514', err.message);
    assert.match(err.message, /^espf\.http_handlers\.signature_auth_key: /);
    assert.equal(err.message.split('\n').length, 1, 'one line');
    if (secret) assert.ok(!err.message.includes(secret.slice(6, 14)), `the value is not quoted: ${err.message}`);
    assert.deepEqual(await row(), before, 'nothing changed');
  }

  it('refuses StandardWebhooks with no secret, or an empty one', async () => {
    await refused(sql`auth_method = 'StandardWebhooks'`, null);
    await refused(sql`auth_method = 'StandardWebhooks', signature_auth_key = ''`, null);
  });

  for (const [what, secret] of [
    ['a plain password', 'correct-horse-battery-staple-1234'],
    ['no whsec_ prefix', randomBytes(32).toString('base64')],
    ['base64url instead of base64', `whsec_${randomBytes(33).toString('base64url')}-_`],
    ['base64 without its padding', `whsec_${randomBytes(32).toString('base64').replace(/=+$/, '')}`],
    ['a key of 16 bytes', `whsec_${randomBytes(16).toString('base64')}`],
    ['a key of 65 bytes', `whsec_${randomBytes(65).toString('base64')}`],
  ] as const) {
    it(`refuses ${what}`, async () => {
      await refused(sql`auth_method = 'StandardWebhooks', signature_auth_key = ${secret}`, secret);
    });
  }

  it('refuses switching to StandardWebhooks over a Signature key that is not a whsec_ secret', async () => {
    await t.db.query(sql`UPDATE espf.http_handlers SET auth_method = 'Signature', signature_auth_key_id = 'k', signature_auth_key = 'plain-hmac-key-1' WHERE handler = 'EventSender'`);
    await refused(sql`auth_method = 'StandardWebhooks'`, 'plain-hmac-key-1');
  });

  it('accepts whsec_ with the base64 of 24 to 64 bytes, and env:ESPF_SECRET_…, but not env: of another variable', async () => {
    for (const n of [24, 32, 64]) {
      await t.db.query(sql`UPDATE espf.http_handlers SET auth_method = 'StandardWebhooks', signature_auth_key = ${`whsec_${randomBytes(n).toString('base64')}`} WHERE handler = 'EventSender'`);
    }
    await t.db.query(sql`UPDATE espf.http_handlers SET signature_auth_key = 'env:ESPF_SECRET_WEBHOOKS' WHERE handler = 'EventSender'`);
    const err = await t.db.query(sql`UPDATE espf.http_handlers SET signature_auth_key = 'env:DATABASE_URL' WHERE handler = 'EventSender'`).then(() => undefined, (e: Error & { code?: string }) => e);
    assert.equal(err?.code, '23514');
    assert.match(err!.message, /signature_auth_key/);
    assert.equal((await row()).signature_auth_key, 'env:ESPF_SECRET_WEBHOOKS');
  });
});

describe('auth StandardWebhooks: the console\'s "Send a test event"', () => {
  it('signs the test event too, with a webhook-id of its own per test', async () => {
    const rx = await new TestReceiver().listen();
    try {
      const row = {
        handler: 'Crm.v2', url: [rx.url], async_mode: true, auth_header: 'Authorization', auth_method: 'StandardWebhooks', signature_auth_key: SECRET,
        max_wait_time: 600, request_timeout: 300, token_rate: 10, token_burstiness: 100, max_attempts: 100, retry_delay: 1, retry_max_delay: 600,
        event_names: {}, breaker_failures: 10, probe_delay: 5, probe_max_delay: 300,
      };
      const [first] = await sendTestEvent(row);
      assert.equal(first?.ok, true, first?.answer);
      const [second] = await sendTestEvent(row);
      assert.equal(second?.ok, true, second?.answer);
      assert.equal(rx.received.length, 2);
      for (const r of rx.received) {
        new Webhook(SECRET).verify(r.body, webhookHeaders(r));
        assert.match(String(r.headers['webhook-id']), /^Crm%2Ev2:test-[0-9a-f-]{36}$/);
      }
      assert.notEqual(rx.received[0]!.headers['webhook-id'], rx.received[1]!.headers['webhook-id']);
    } finally {
      await rx.close();
    }
  });
});
