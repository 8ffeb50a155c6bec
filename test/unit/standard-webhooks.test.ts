// Pure unit tests (no database, no network): the Standard Webhooks headers
// (src/delivery/standard-webhooks.ts, src/delivery/auth.ts), checked with the
// specification's published verifier (npm standardwebhooks).
import assert from 'node:assert/strict';
import { Webhook, WebhookVerificationError } from 'standardwebhooks';
import type { HttpSettings } from '../../src/config/snapshot.ts';
import { authHeaders, secretsIn } from '../../src/delivery/auth.ts';
import { webhookId, webhookKey, webhookSignature } from '../../src/delivery/standard-webhooks.ts';

const msg = (handler: string, i_event: number) => ({ handler, event: { i_event } });
const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';   // the specification's example secret (24 bytes)

const settings = (more: Partial<HttpSettings> = {}): HttpSettings => ({
  url: ['http://a.test/x'], async_mode: true, auth_header: 'Authorization', auth_method: 'StandardWebhooks',
  basic_auth_user: null, basic_auth_key: null, custom_auth_type: null, custom_auth_credentials: null,
  signature_auth_key_id: null, signature_auth_key: SECRET, max_wait_time: 10, request_timeout: 5,
  token_rate: 100, token_burstiness: 100, max_attempts: 3, retry_delay: 1, retry_max_delay: 10, ca_file: null,
  event_names: {}, breaker_failures: 2, probe_delay: 60, probe_max_delay: 600, ...more,
});

describe('Standard Webhooks headers (pure)', () => {
  it('webhook-id is <handler>:<i_event>, with no "." (a "." of the handler is written %2E)', () => {
    assert.equal(webhookId('EventSender', 1234), 'EventSender:1234');
    assert.equal(webhookId('crm.v2', 7), 'crm%2Ev2:7');
    assert.ok(!webhookId('x.y.z', 99).includes('.'));
  });

  it('signs as the reference library does', () => {
    const wh = new Webhook(SECRET);
    const body = '{"event_type":"Account/New","variables":{"i_event":1,"name":"Zoë"}}';
    const ts = 1674087231;
    assert.equal(webhookSignature(webhookKey(SECRET, 'k'), 'EventSender:1', String(ts), body), wh.sign('EventSender:1', new Date(ts * 1000), body));
  });

  it('authHeaders gives the three headers, which the verifier accepts for the body sent and no other', () => {
    const body = '{"event_type":"Account/Blocked","variables":{"i_event":42}}';
    const h = authHeaders(settings(), 'Sun, 06 Dec 2026 22:00:00 GMT', msg('EventSender', 42), body);
    assert.deepEqual(h.map(([k]) => k), ['webhook-id', 'webhook-timestamp', 'webhook-signature']);
    assert.equal(h[0]![1], 'EventSender:42');
    assert.ok(Math.abs(Number(h[1]![1]) - Date.now() / 1000) < 2);
    const headers = Object.fromEntries(h);
    assert.deepEqual(new Webhook(SECRET).verify(body, headers), JSON.parse(body));
    assert.throws(() => new Webhook(SECRET).verify(body.replace('42', '43'), headers), WebhookVerificationError);
    assert.throws(() => new Webhook('whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA').verify(body, headers), WebhookVerificationError);
  });

  it('a secret of another form fails with ESPF_SECRET_INVALID, naming the setting and not the value', () => {
    for (const bad of ['plain-password-1234', 'whsec_short', `whsec_${Buffer.alloc(16).toString('base64')}`, SECRET.slice(6)]) {
      assert.throws(() => authHeaders(settings({ signature_auth_key: bad }), '', msg('H', 1), '{}'),
        (e: Error & { code?: string }) => e.code === 'ESPF_SECRET_INVALID' && e.message.startsWith('signature_auth_key ') && !e.message.includes(bad));
    }
  });

  it('None adds no header; the other methods one, in auth_header', () => {
    assert.equal(authHeaders(settings({ auth_method: 'None' }), '', msg('H', 1), '{}').length, 0);
    assert.deepEqual(authHeaders(settings({ auth_method: 'Custom', auth_header: 'X-Auth', custom_auth_type: 'Token', custom_auth_credentials: 'abc123' }), '', msg('H', 1), '{}'),
      [['x-auth', 'Token abc123']]);
  });

  it('secretsIn hides the secret (whole and without whsec_), not the id, time or signature', () => {
    const h = authHeaders(settings(), '', msg('EventSender', 5), '{}');
    const secrets = secretsIn(settings(), h);
    assert.ok(secrets.includes(SECRET) && secrets.includes(SECRET.slice(6)));
    for (const [, v] of h) assert.ok(!secrets.includes(v));
    const custom = settings({ auth_method: 'Custom', custom_auth_type: 'Token', custom_auth_credentials: 'abc123' });
    assert.ok(secretsIn(custom, authHeaders(custom, '', msg('H', 1), '{}')).includes('Token abc123'));
  });
});
