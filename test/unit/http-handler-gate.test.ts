// Pure unit tests (no database, no network: a Poster of its own): the lane
// gate inside a real HttpHandler (src/delivery/http-handler.ts) with its
// lanes, memory window and records: what waits at the gate is recorded
// PENDING and counted in the window, goes to its own lane's URL once the
// other lane has let go of the account, and stays recorded across a stop.
import assert from 'node:assert/strict';
import type { HandlerConfig, HttpSettings } from '../../src/config/snapshot.ts';
import type { StepRow } from '../../src/db/config.ts';
import type { Poster } from '../../src/delivery/attempter.ts';
import type { PostResult } from '../../src/delivery/http-client.ts';
import { HttpHandler } from '../../src/delivery/http-handler.ts';
import type { Item } from '../../src/delivery/item.ts';
import { completeObserver } from '../../src/delivery/observer.ts';
import type { Outcome } from '../../src/delivery/results-writer.ts';
import { SpillWindow } from '../../src/delivery/window.ts';
import type { Logger, ProvisioningLog } from '../../src/log/logger.ts';
import { eventually } from '../support/receiver.ts';

const base = {
  async_mode: true, auth_header: 'Authorization', auth_method: 'None', basic_auth_user: null, basic_auth_key: null, custom_auth_type: null,
  custom_auth_credentials: null, signature_auth_key_id: null, signature_auth_key: null, max_wait_time: 10, request_timeout: 5, token_rate: 1e6,
  token_burstiness: 1e6, max_attempts: 100, retry_delay: 0.01, retry_max_delay: 0.01, ca_file: null, event_names: {}, breaker_failures: 1000,
  probe_delay: 60, probe_max_delay: 600,
} as const;
const http = (url: string): HttpSettings => ({ ...base, url: [url] }) as HttpSettings;
const config: HandlerConfig = {
  name: 'H', kind: 'http', enabled: true, instance: 'main', types: new Set(['Account/Blocked']),
  http: http('http://default.test/'), envs: new Map([[2, http('http://env2.test/')]]),
};
const ok: PostResult = { ok: true, status: 200, durationMs: 1 };

let seq = 1;
/** An event of account `a` in environment `env`, fresh from the stream. */
const item = (a: number, env: number): Item => ({
  handler: 'H', orderKey: `a:${a}`, iAccount: a, commitLsn: null, committedAt: new Date(), resumed: null,
  event: { i_event: seq, event_type: 'Account/Blocked', variables: { i_account: a, i_env: env, n: seq++ }, source_i_event: null },
});

/** A handler whose posts wait until the test answers them. */
function setup(windowSize = 100, handler: HandlerConfig = config) {
  const posts: { url: string; iEvent: number; answer: (r: PostResult) => void }[] = [];
  const client: Poster = {
    post: (url, body) => new Promise<PostResult>((answer) => { posts.push({ url, iEvent: (JSON.parse(body) as { variables: { n: number } }).variables.n, answer }); }),
    close: async () => undefined,
  };
  const records: string[] = [];
  const record = (i: Item, o: Outcome) => { records.push(`${i.event.i_event} ${o.state}`); return Promise.resolve(); };
  const window = new SpillWindow(windowSize);
  const silent = { warn() {}, info() {}, debug() {}, error() {} } as unknown as Logger;
  const plog = { attempt: () => undefined, flush: async () => undefined } as unknown as ProvisioningLog;
  const h = new HttpHandler('H', { instance: 'main', record, plog, log: silent, observer: completeObserver(), window, client, config: () => handler });
  /** Waits until a post of `iEvent` is on the wire (the token bucket hands out tokens on a timer). */
  const posted = (iEvent: number) => eventually(async () => posts.find((x) => x.iEvent === iEvent), 5_000, `a post of event ${iEvent}`);
  /**
   * Account 1's first event (env 1) on the wire in the default lane; then it
   * moves to env 2 and has a later event; account 2 of env 2 has one too.
   */
  const moved = async () => {
    const first = item(1, 1);
    h.enqueue(first);
    const wire = await posted(first.event.i_event);
    const later = item(1, 2);
    const other = item(2, 2);
    h.enqueue(later);
    h.enqueue(other);
    return { first, wire, later, other };
  };
  return { h, posts, records, window, posted, moved };
}

describe('http handler: the lane gate (pure)', () => {
  it('an account moved to env 2 while its first event is on the wire in the default lane: the later one waits, recorded and counted, then goes to env 2\'s URL', async () => {
    const { h, posts, records, window, posted, moved } = setup();
    const { wire, later, other } = await moved();
    assert.ok(records.includes(`${later.event.i_event} PENDING`), 'recorded PENDING: the slot moves on');
    assert.equal(window.held, 3, 'counted in the memory window');
    assert.equal(h.size, 3);
    assert.equal((await posted(other.event.i_event)).url, 'http://env2.test/', 'another account of env 2 goes on');
    assert.equal(posts.some((p) => p.iEvent === later.event.i_event), false, 'the later event waits');
    assert.equal(h.enqueueWaiting(later), false, 'a page that shows it waiting does not bring it in twice');
    wire.answer(ok);
    const sent = await posted(later.event.i_event);
    assert.equal(sent.url, 'http://env2.test/', 'with its own lane\'s settings');
    sent.answer(ok);
    posts.find((p) => p.iEvent === other.event.i_event)!.answer(ok);
    await eventually(async () => window.held === 0, 5_000, 'each left the window once');
    assert.deepEqual(records.filter((r) => r.endsWith('DELIVERED')).length, 3);
  });

  it('what waits at the gate fills the memory window like any delivery: past it, deliveries go to the database only', async () => {
    const { h, records, window, posted } = setup(2);
    const first = item(1, 1);
    h.enqueue(first);
    await posted(first.event.i_event);
    const later = item(1, 2);
    h.enqueue(later);
    assert.equal(window.held, 2, 'the one at the gate counts');
    assert.equal(window.spilled, false);
    const third = item(3, 2);
    h.enqueue(third);
    assert.equal(window.spilled, true, 'the window is full: spilled');
    const fourth = item(1, 2);
    h.enqueue(fourth);
    assert.equal(h.size, 2, 'neither went into memory');
    assert.deepEqual(records, [`${later.event.i_event} PENDING`, `${third.event.i_event} PENDING`, `${fourth.event.i_event} PENDING`]);
  });

  it('a stop leaves what waits at the gate recorded and never sent', async () => {
    const { h, posts, records, posted, moved } = setup();
    const { first, wire, later, other } = await moved();
    (await posted(other.event.i_event)).answer(ok);
    assert.equal(posts.some((p) => p.iEvent === later.event.i_event), false, 'it waits at the gate');
    const stopped = h.stop(1000);
    wire.answer(ok);
    await stopped;
    assert.ok(records.includes(`${later.event.i_event} PENDING`));
    assert.ok(records.includes(`${first.event.i_event} DELIVERED`));
    assert.equal(posts.some((p) => p.iEvent === later.event.i_event), false, 'not let go into a stopping lane');
  });

  it('request steps: deliveries of a type without steps, ready together, are each recorded SKIPPED (one finishing at once pumps again)', async () => {
    const step: StepRow = {
      handler: 'H', event_type: 'Account/New', step: 1, name: null, method: 'POST', path: '', headers: {}, body: null,
      content_type: 'application/json', success_when: null, refuse_when: null, exists_when: null,
    };
    const { h, records, posts } = setup(100, { ...config, steps: [step] });
    const rejected: unknown[] = [];
    const onRejection = (err: unknown) => { rejected.push(err); };
    process.on('unhandledRejection', onRejection);
    try {
      const items = [1, 2, 3, 4, 5].map((a) => item(a, 1));
      for (const i of items) h.enqueue(i);
      await eventually(async () => records.length === items.length, 5_000, 'each recorded');
      await new Promise((r) => setImmediate(r)); // rejections are reported after the microtasks
      assert.deepEqual(rejected, [], 'no attempt of nothing');
    } finally {
      process.off('unhandledRejection', onRejection);
    }
    assert.deepEqual(records.map((r) => r.split(' ')[1]), ['SKIPPED', 'SKIPPED', 'SKIPPED', 'SKIPPED', 'SKIPPED']);
    assert.equal(posts.length, 0);
    assert.equal(h.size, 0);
  });
});
