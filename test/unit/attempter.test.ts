// Pure unit tests (no database, no network): the attempts of an http handler.
import assert from 'node:assert/strict';
import type { HttpSettings } from '../../src/config/snapshot.ts';
import { Attempter, maxInFlight, type Poster } from '../../src/delivery/attempter.ts';
import type { PostResult } from '../../src/delivery/http-client.ts';
import { deliveryOf } from '../../src/delivery/keyed-queue.ts';
import { completeObserver } from '../../src/delivery/observer.ts';
import type { AttemptLine, Logger, ProvisioningLog } from '../../src/log/logger.ts';

const settings = (more: Partial<HttpSettings> = {}): HttpSettings => ({
  url: ['http://a.test/x', 'http://b.test/y'], async_mode: false, auth_header: 'Authorization', auth_method: 'None',
  basic_auth_user: null, basic_auth_key: null, custom_auth_type: null, custom_auth_credentials: null,
  signature_auth_key_id: null, signature_auth_key: null, max_wait_time: 10, request_timeout: 5,
  token_rate: 100, token_burstiness: 100, max_attempts: 3, retry_delay: 1, retry_max_delay: 10, ca_file: null,
  event_names: {}, breaker_failures: 2, probe_delay: 60, probe_max_delay: 600, ...more,
});
const ok: PostResult = { ok: true, status: 200, durationMs: 1 };
const down: PostResult = { ok: false, status: 503, reason: 'HTTP 503', retryAfterMs: null, durationMs: 1 };
const silent = { warn() {}, info() {}, debug() {}, error() {} } as unknown as Logger;

function setup(answer: (url: string) => PostResult) {
  const posts: { url: string; body: string }[] = [];
  const lines: AttemptLine[] = [];
  const attempts: string[] = [];
  const client: Poster = {
    post: async (url, body) => { posts.push({ url, body }); return answer(url); },
    close: async () => undefined,
  };
  const plog = { attempt: (l: AttemptLine) => lines.push(l), flush: async () => undefined } as ProvisioningLog;
  const events: string[] = [];
  const a = new Attempter('H', null, {
    instance: 'main', plog, log: silent, client, tokens: () => undefined,
    observer: completeObserver({ attempt: (h, r) => attempts.push(`${h} ${r.ok ? 'ok' : 'failed'}`) }),
    target: (state, event) => events.push(`${state.url} ${event}`),
  });
  return { a, posts, lines, attempts, events };
}

function delivery() {
  return deliveryOf({
    event: { i_event: 7, event_type: 'Account/Blocked', variables: { i_account: 1 }, source_i_event: null },
    handler: 'H', orderKey: 'a:1', iAccount: 1, commitLsn: null, committedAt: null, resumed: null,
  });
}

describe('attempter (pure)', () => {
  it('one attempt posts to each URL in turn, logs each request and reports the attempt complete', async () => {
    const { a, posts, lines, attempts } = setup(() => ok);
    const d = delivery();
    const o = await a.attempt(d, settings(), false);
    assert.equal(o.complete, true);
    assert.deepEqual(posts.map((p) => p.url), ['http://a.test/x', 'http://b.test/y']);
    assert.equal(posts[0]!.body, JSON.stringify({ event_type: 'Account/Blocked', variables: { i_account: 1 } }));
    assert.deepEqual(lines.map((l) => [l.url, l.attempt, l.status]), [['http://a.test/x', 1, 200], ['http://b.test/y', 1, 200]]);
    assert.deepEqual(attempts, ['H ok', 'H ok']);
    assert.equal(d.attempts, 1);
    assert.equal(d.urlsDone, 2);
    assert.ok(d.firstAttemptAt);
    assert.equal(a.inFlight, 0);
  });

  it('a failure stops the attempt; the next one starts at the URL that failed', async () => {
    let bDown = true;
    const { a, posts } = setup((url) => (url.includes('b.test') && bDown ? down : ok));
    const d = delivery();
    const first = await a.attempt(d, settings({ breaker_failures: 10 }), false);
    assert.equal(first.complete, false);
    assert.equal(first.targetDown, false);
    assert.equal(d.urlsDone, 1);
    bDown = false;
    const second = await a.attempt(d, settings({ breaker_failures: 10 }), false);
    assert.equal(second.complete, true);
    assert.deepEqual(posts.map((p) => p.url), ['http://a.test/x', 'http://b.test/y', 'http://b.test/y']);
    assert.equal(d.attempts, 2);
  });

  it('a target that went down gets no request but a probe; an attempt refused by it does not count', async () => {
    const { a, posts, events } = setup(() => down);
    const s = settings({ url: ['http://a.test/x'], breaker_failures: 2 });
    const d = delivery();
    await a.attempt(d, s, false);
    await a.attempt(d, s, false);
    assert.deepEqual(events, ['http://a.test/x down']);
    assert.equal(a.anyDown, true);
    assert.ok(a.probeWaitMs(s.url)! > 0, 'the first probe waits probe_delay');
    const refused = await a.attempt(d, s, false);
    assert.equal(refused.targetDown, true);
    assert.equal(posts.length, 2, 'not sent to a target that is down');
    assert.equal(d.attempts, 2, 'the refused attempt does not count');
    const probe = await a.attempt(d, s, true);
    assert.equal(posts.length, 3, 'the probe is sent');
    assert.equal(probe.targetDown, true, 'a failed probe: still down');
    assert.equal(d.attempts, 2);
    assert.deepEqual(a.targetStates(s.url).map((t) => t.up), [false]);
  });

  it('a sync handler attempts one delivery at a time', async () => {
    let release!: () => void;
    const { a } = setup(() => ok);
    const s = settings({ url: ['http://a.test/x'] });
    assert.equal(a.slots(5, s), 1);
    const slow = new Attempter('H', null, {
      instance: 'main', plog: { attempt() {}, flush: async () => undefined } as ProvisioningLog, log: silent, tokens: () => undefined,
      observer: completeObserver(), target: () => undefined,
      client: { post: () => new Promise((r) => { release = () => r(ok); }), close: async () => undefined },
    });
    const on = slow.attempt(delivery(), s, false);
    assert.equal(slow.inFlight, 1);
    assert.equal(slow.slots(5, s), 0, 'one on the wire');
    release();
    await on;
    assert.equal(slow.slots(5, s), 1);
    assert.equal(slow.slots(0, s), 0, 'nothing ready');
  });
  it('an async handler has at most as many attempts on the wire as connections for its URLs (128 each)', async () => {
    assert.equal(maxInFlight({ url: ['http://a.test/x'] }), 128);
    assert.equal(maxInFlight({ url: ['http://a.test/x', 'http://b.test/y'] }), 256);
    for (const url of [['http://a.test/x'], ['http://a.test/x', 'http://b.test/y']]) {
      const hanging: (() => void)[] = [];
      const a = new Attempter('H', null, {
        instance: 'main', plog: { attempt() {}, flush: async () => undefined } as ProvisioningLog, log: silent, tokens: () => undefined,
        observer: completeObserver(), target: () => undefined,
        client: { post: () => new Promise((r) => { hanging.push(() => r(ok)); }), close: async () => undefined },
      });
      const s = settings({ url, async_mode: true, token_rate: 1_000_000, token_burstiness: 2_000_000 });
      const attempts: Promise<unknown>[] = [];
      // Tokens come in as the bucket refills: take slots until none is given for a while.
      for (let idle = 0, t0 = Date.now(); idle < 20 && Date.now() - t0 < 5000;) {
        const n = a.slots(1000, s);
        for (let i = 0; i < n; i++) attempts.push(a.attempt(delivery(), s, false));
        idle = n === 0 ? idle + 1 : 0;
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.equal(a.inFlight, maxInFlight(s), `${url.length} URL(s)`);
      assert.equal(hanging.length, maxInFlight(s));
      for (const release of hanging.splice(0)) release();
      for (let i = 0; i < url.length; i++) {
        await new Promise((r) => setImmediate(r));
        for (const release of hanging.splice(0)) release();
      }
      await Promise.all(attempts);
      assert.equal(a.inFlight, 0);
      a.reconfigure({ ...s, token_rate: 1 }); // stops the bucket's timer
    }
  });
});
