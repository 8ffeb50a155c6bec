// Pure unit tests (no database): the keyed queue of an http handler.
import assert from 'node:assert/strict';
import type { Item } from '../../src/delivery/item.ts';
import { deliveryOf, KeyedQueue, type Delivery } from '../../src/delivery/keyed-queue.ts';

let next = 1;
function item(key: string, type = 'Account/Blocked', resumed: Item['resumed'] = null): Item {
  const i = next++;
  return {
    event: { i_event: i, event_type: type, variables: {}, source_i_event: null },
    handler: 'h', orderKey: key, iAccount: null, commitLsn: null, committedAt: new Date(1000 * i), resumed,
  };
}

function queue(): { q: KeyedQueue; superseded: Delivery[]; readied: () => number } {
  const superseded: Delivery[] = [];
  let readied = 0;
  const q = new KeyedQueue({ ready: () => { readied++; }, superseded: (d) => superseded.push(d) });
  return { q, superseded, readied: () => readied };
}

describe('keyed queue (pure)', () => {
  it('the head of each key alone is ready; the next of a key once the head is done', () => {
    const { q } = queue();
    const [a1, a2, b1] = [deliveryOf(item('a:1')), deliveryOf(item('a:1')), deliveryOf(item('a:2'))];
    assert.equal(q.add(a1, false), 'head');
    assert.equal(q.add(a2, false), 'behind');
    assert.equal(q.add(b1, false), 'head');
    assert.equal(q.size, 3);
    assert.equal(q.readyCount, 2);
    const first = [q.next(), q.next()];
    assert.deepEqual(new Set(first), new Set([a1, b1]));
    assert.equal(q.next(), undefined, 'a2 waits behind a1');
    assert.deepEqual(q.behind(a1), [a2]);
    q.done(a1);
    assert.equal(q.next(), a2);
    assert.equal(q.holds(a1.item.event.i_event), false);
    assert.equal(q.holds(a2.item.event.i_event), true);
    assert.equal(q.oldestSince(), a2.item.committedAt, 'the older of the two heads');
  });

  it('fresh deliveries and those from the database take turns', () => {
    const { q } = queue();
    const resumed = { attempts: 1, urlsDone: 0, firstAttemptAt: null, nextAttemptAt: null };
    const fresh = [1, 2, 3].map((k) => deliveryOf(item(`a:${k}`)));
    const waiting = [4, 5].map((k) => deliveryOf(item(`a:${k}`, 'Account/Blocked', resumed)));
    assert.equal(waiting[0]!.fromDatabase, true);
    assert.equal(waiting[0]!.attempts, 1, 'the attempt state of its row');
    for (const d of [...fresh, ...waiting]) q.add(d, false);
    assert.deepEqual([q.next(), q.next(), q.next(), q.next(), q.next()], [fresh[0], waiting[0], fresh[1], waiting[1], fresh[2]]);
  });

  it('a head waits for its retry time; those added behind it meanwhile are told so', async () => {
    const { q, readied } = queue();
    const a1 = deliveryOf(item('a:1'));
    q.add(a1, false);
    assert.equal(q.next(), a1);
    q.retryAt(a1, new Date(Date.now() + 20));
    assert.equal(q.readyCount, 0);
    assert.equal(q.add(deliveryOf(item('a:1')), false), 'behind-retry');
    await new Promise((r) => setTimeout(r, 40));
    assert.equal(readied(), 1);
    assert.equal(q.next(), a1);
    assert.equal(a1.nextAttemptAt, null, 'taken: its wait is over');
  });

  it('coalescing: a new delivery supersedes the older ones of its type that wait, not the one on the wire', () => {
    const { q, superseded } = queue();
    const head = deliveryOf(item('a:1', 'Account/Balance'));
    q.add(head, true);
    assert.equal(q.next(), head);                     // on the wire
    const older = deliveryOf(item('a:1', 'Account/Balance'));
    const other = deliveryOf(item('a:1', 'Account/Blocked'));
    q.add(older, true);
    q.add(other, true);
    const newest = deliveryOf(item('a:1', 'Account/Balance'));
    assert.equal(q.add(newest, true), 'behind');
    assert.deepEqual(superseded, [older]);
    assert.deepEqual(q.behind(head), [other, newest]);
    assert.equal(q.size, 3);
  });

  it('coalescing: a head waiting for its retry is superseded too, and the next one is ready at once', () => {
    const { q, superseded, readied } = queue();
    const head = deliveryOf(item('a:1', 'Account/Balance'));
    q.add(head, true);
    q.next();
    const other = deliveryOf(item('a:1', 'Account/Blocked'));
    q.add(other, true);
    q.retryAt(head, new Date(Date.now() + 60_000));
    const newest = deliveryOf(item('a:1', 'Account/Balance'));
    assert.equal(q.add(newest, true), 'behind');
    assert.deepEqual(superseded, [head]);
    assert.equal(readied(), 1, 'the new head is ready');
    assert.equal(q.next(), other);
    q.stop();
  });

  it('coalescing: a key that empties takes the new delivery as its head', () => {
    const { q, superseded } = queue();
    const head = deliveryOf(item('a:1', 'Account/Balance'));
    q.add(head, true);
    q.next();
    q.retryAt(head, new Date(Date.now() + 60_000));
    const newest = deliveryOf(item('a:1', 'Account/Balance'));
    assert.equal(q.add(newest, true), 'head');
    assert.deepEqual(superseded, [head]);
    assert.equal(q.next(), newest);
    assert.deepEqual([...q.entries()], [newest]);
  });
});
