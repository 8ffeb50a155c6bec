// Pure unit tests (no database): the keyed queue's "key drained" signal and
// the gate that keeps an account's order across the lanes of an http handler
// (src/delivery/lane-gate.ts). The end-to-end behaviour, with PostgreSQL and
// real receivers, is in test/lane-order.test.ts.
import assert from 'node:assert/strict';
import type { Item } from '../../src/delivery/item.ts';
import { deliveryOf, KeyedQueue, type Delivery } from '../../src/delivery/keyed-queue.ts';
import { LaneGate, type GatedLane } from '../../src/delivery/lane-gate.ts';

let seq = 1;
/** An item of order key `key`, fresh from the stream, in commit order (each later than the last). */
const item = (key: string, type = 'Account/Blocked'): Item => ({
  handler: 'h', orderKey: key, iAccount: null, commitLsn: null, committedAt: new Date(1000 * seq), resumed: null,
  event: { i_event: seq++, event_type: type, variables: {}, source_i_event: null },
});

/** A keyed queue whose "drained" calls are listed. */
function drainingQueue(): { q: KeyedQueue; drained: string[]; superseded: Delivery[] } {
  const drained: string[] = [];
  const superseded: Delivery[] = [];
  const q = new KeyedQueue({ ready: () => undefined, superseded: (d) => superseded.push(d), drained: (k) => drained.push(k) });
  return { q, drained, superseded };
}

describe('keyed queue: the "key drained" signal', () => {
  it('fires once the last delivery of a key is done, not before, and only for that key', () => {
    const { q, drained } = drainingQueue();
    const [a1, a2, b1] = [deliveryOf(item('a:1')), deliveryOf(item('a:1')), deliveryOf(item('a:2'))];
    q.add(a1, false);
    q.add(a2, false);
    q.add(b1, false);
    assert.equal(q.holdsKey('a:1'), true);
    q.next(); q.next();
    q.done(a1);
    assert.deepEqual(drained, [], 'a2 is still held');
    assert.equal(q.holdsKey('a:1'), true);
    q.done(b1);
    assert.deepEqual(drained, ['a:2']);
    assert.equal(q.holdsKey('a:2'), false);
    q.next();
    q.done(a2);
    assert.deepEqual(drained, ['a:2', 'a:1']);
    assert.equal(q.holdsKey('a:1'), false);
  });

  it('a head waiting for its retry holds its key; coalescing that replaces the whole key does not drain it', () => {
    const { q, drained, superseded } = drainingQueue();
    const head = deliveryOf(item('a:1', 'Account/Balance'));
    q.add(head, true);
    q.next();
    q.retryAt(head, new Date(Date.now() + 60_000));
    assert.equal(q.holdsKey('a:1'), true, 'waiting for its retry');
    const newest = deliveryOf(item('a:1', 'Account/Balance'));
    assert.equal(q.add(newest, true), 'head');
    assert.deepEqual(superseded, [head]);
    assert.deepEqual(drained, [], 'the key was never empty for anyone to see');
    assert.equal(q.holdsKey('a:1'), true);
    q.next();
    q.done(newest);
    assert.deepEqual(drained, ['a:1']);
  });

  it('supersedeWaiting (a newer one waits in another lane): the waiting ones of the type go, not the one on the wire; a key it empties is drained', () => {
    const { q, drained, superseded } = drainingQueue();
    const [wire, older, other] = [deliveryOf(item('a:1', 'Account/Balance')), deliveryOf(item('a:1', 'Account/Balance')), deliveryOf(item('a:1', 'Account/Blocked'))];
    q.add(wire, true);
    q.next();
    q.add(older, true);
    q.add(other, true);
    q.supersedeWaiting('a:1', 'Account/Balance');
    assert.deepEqual(superseded, [older]);
    assert.deepEqual([...q.entries()], [wire, other]);
    assert.deepEqual(drained, []);
    const retrying = deliveryOf(item('a:2', 'Account/Balance'));
    q.add(retrying, true);
    q.next();
    q.retryAt(retrying, new Date(Date.now() + 60_000));
    q.supersedeWaiting('a:2', 'Account/Balance');
    assert.deepEqual(superseded, [older, retrying]);
    assert.equal(q.holdsKey('a:2'), false);
    assert.deepEqual(drained, ['a:2']);
    q.supersedeWaiting('a:3', 'Account/Balance');
    assert.deepEqual(drained, ['a:2'], 'a key it does not hold is left alone');
  });
});

/** A lane for the gate: a keyed queue and the calls the gate made. */
class FakeLane implements GatedLane {
  readonly q: KeyedQueue;
  readonly admitted: Delivery[] = [];
  readonly held: Item[] = [];
  readonly superseded: Delivery[] = [];
  /** Superseded in the lane's own queue (coalescing reaching across from the gate). */
  readonly supersededHere: Delivery[] = [];
  spill = false;
  /** A delivery admitted finishes at once (as one skipped: a type without request steps). */
  finishAtOnce = false;
  constructor(drained: (key: string) => void) {
    this.q = new KeyedQueue({ ready: () => undefined, superseded: (d) => this.supersededHere.push(d), drained });
  }
  holdsKey(key: string): boolean { return this.q.holdsKey(key); }
  hold(i: Item): Delivery | null {
    if (this.spill) return null;
    this.held.push(i);
    return deliveryOf(i);
  }
  admit(d: Delivery): void {
    this.admitted.push(d);
    this.q.add(d, false);
    if (this.finishAtOnce && this.q.next() === d) this.q.done(d);
  }
  supersede(d: Delivery): void { this.superseded.push(d); }
  supersedeWaiting(key: string, type: string): void { this.q.supersedeWaiting(key, type); }
  /** The lane puts a delivery in (as the handler does when the gate lets it by). */
  put(i: Item): Delivery {
    const d = deliveryOf(i);
    this.q.add(d, false);
    return d;
  }
  /** The head of `key` is sent and finishes. */
  finishHead(key: string): Delivery {
    const d = [...this.q.entries()].find((x) => x.item.orderKey === key)!;
    this.q.done(d);
    return d;
  }
}

function gateWith(keys: (string | null)[], coalesce: (t: string) => boolean = () => false) {
  const lanes = new Map<string | null, FakeLane>();
  const gate: LaneGate<string | null> = new LaneGate(lanes, coalesce);
  for (const k of keys) lanes.set(k, new FakeLane((key) => gate.drained(key)));
  const lane = (k: string | null) => lanes.get(k)!;
  /** What the handler does with a delivery for lane `to`. */
  const enqueue = (i: Item, to: string | null): Delivery | 'gated' => (gate.take(i, to) ? 'gated' : lane(to).put(i));
  return { gate, lane, enqueue };
}

describe('lane gate (pure)', () => {
  it('a delivery whose key another lane holds waits, durable, and goes to its own lane once that lane drains; other keys pass', () => {
    const { gate, lane, enqueue } = gateWith([null, 'env2']);
    const a1 = item('a:1');
    assert.notEqual(enqueue(a1, null), 'gated', 'nothing holds a:1: straight to its lane');
    const a2 = item('a:1');
    assert.equal(enqueue(a2, 'env2'), 'gated');
    assert.deepEqual(lane('env2').held, [a2], 'held by its own lane (window, PENDING)');
    assert.equal(gate.size, 1);
    assert.equal(gate.holds(a2.event.i_event), true);
    const b1 = item('a:2');
    assert.notEqual(enqueue(b1, 'env2'), 'gated', 'another account goes on');
    assert.equal(lane('env2').admitted.length, 0);
    lane(null).finishHead('a:1');
    assert.deepEqual(lane('env2').admitted.map((d) => d.item), [a2], 'released to its own lane');
    assert.equal(gate.size, 0);
    assert.equal(gate.holds(a2.event.i_event), false);
  });

  it('later deliveries of the key queue behind the gated ones in commit order, whatever their lane; each lane gets its own in turn', () => {
    const { gate, lane, enqueue } = gateWith([null, 'env2', 'env3']);
    enqueue(item('a:1'), null);                              // the default lane holds a:1 (a retry, say)
    const [x2, y2, x3, y1] = [item('a:1'), item('a:1'), item('a:1'), item('a:1')];
    assert.equal(enqueue(x2, 'env2'), 'gated');
    assert.equal(enqueue(y2, 'env2'), 'gated');
    assert.equal(enqueue(x3, 'env3'), 'gated');
    assert.equal(enqueue(y1, null), 'gated', 'behind the gated ones even though its own lane holds the key');
    lane(null).finishHead('a:1');
    assert.deepEqual(lane('env2').admitted.map((d) => d.item), [x2, y2], 'env2 gets its two');
    assert.deepEqual(lane('env3').admitted, [], 'env3 waits for env2');
    lane('env2').finishHead('a:1');
    assert.deepEqual(lane('env3').admitted, [], 'env2 still holds y2');
    lane('env2').finishHead('a:1');
    assert.deepEqual(lane('env3').admitted.map((d) => d.item), [x3]);
    assert.deepEqual(lane(null).admitted, []);
    lane('env3').finishHead('a:1');
    assert.deepEqual(lane(null).admitted.map((d) => d.item), [y1]);
    assert.equal(gate.size, 0);
  });

  it('a delivery the window sends to the database only is taken, not held: the pages bring it back', () => {
    const { gate, lane, enqueue } = gateWith([null, 'env2']);
    enqueue(item('a:1'), null);
    lane('env2').spill = true;
    assert.equal(enqueue(item('a:1'), 'env2'), 'gated');
    assert.equal(gate.size, 0);
    lane(null).finishHead('a:1');
    assert.deepEqual(lane('env2').admitted, []);
  });

  it('coalescing among the gated: a new one of a coalesced type supersedes the older ones of its type; others keep their place', () => {
    const { gate, lane, enqueue } = gateWith([null, 'env2'], (t) => t === 'Account/Balance');
    enqueue(item('a:1'), null);
    const [old, other, newest] = [item('a:1', 'Account/Balance'), item('a:1', 'Account/Blocked'), item('a:1', 'Account/Balance')];
    enqueue(old, 'env2');
    enqueue(other, 'env2');
    enqueue(newest, 'env2');
    assert.deepEqual(lane('env2').superseded.map((d) => d.item), [old]);
    assert.equal(gate.size, 2);
    assert.equal(gate.holds(old.event.i_event), false);
    lane(null).finishHead('a:1');
    assert.deepEqual(lane('env2').admitted.map((d) => d.item), [other, newest]);
  });

  it('coalescing that supersedes every gated one lets the new one go at once when its own lane is the one holding the key', () => {
    const { gate, lane, enqueue } = gateWith([null, 'env2'], (t) => t === 'Account/Balance');
    enqueue(item('a:1'), 'env2');                            // env2 holds a:1
    const old = item('a:1', 'Account/Balance');
    assert.equal(enqueue(old, null), 'gated', 'its row dropped, say: to the default lane, behind env2');
    const newest = item('a:1', 'Account/Balance');
    assert.equal(enqueue(newest, 'env2'), 'gated', 'taken by the gate...');
    assert.deepEqual(lane(null).superseded.map((d) => d.item), [old]);
    assert.deepEqual(lane('env2').admitted.map((d) => d.item), [newest], '...and let go at once: only its own lane holds the key');
    assert.equal(gate.size, 0);
  });

  it('a delivery that finishes as it is admitted lets the next ones go, each once, in order', () => {
    const { gate, lane, enqueue } = gateWith([null, 'env2']);
    enqueue(item('a:1'), null);
    const [x, y, z] = [item('a:1'), item('a:1'), item('a:1')];
    enqueue(x, 'env2');
    enqueue(y, 'env2');
    enqueue(z, null);
    lane('env2').finishAtOnce = true;
    lane(null).finishHead('a:1');
    assert.deepEqual(lane('env2').admitted.map((d) => d.item), [x, y]);
    assert.deepEqual(lane(null).admitted.map((d) => d.item), [z]);
    assert.equal(gate.size, 0);
  });

  it('coalescing reaches into the other lane: its waiting ones of the type are superseded; the gated one goes once that lane drains', () => {
    const balance = (t: string) => t === 'Account/Balance';
    const { gate, lane, enqueue } = gateWith([null, 'env2'], balance);
    const head = enqueue(item('a:1', 'Account/Blocked'), null) as Delivery;
    lane(null).q.next();                                     // on the wire
    const older = item('a:1', 'Account/Balance');
    enqueue(older, null);
    const newest = item('a:1', 'Account/Balance');
    assert.equal(enqueue(newest, 'env2'), 'gated');
    assert.deepEqual(lane(null).supersededHere.map((d) => d.item), [older]);
    assert.equal(gate.size, 1);
    lane(null).q.done(head);
    assert.deepEqual(lane('env2').admitted.map((d) => d.item), [newest]);
  });

  it('coalescing that empties the other lane (its head waited for a retry) lets the new one go at once', () => {
    const { gate, lane, enqueue } = gateWith([null, 'env2'], (t) => t === 'Account/Balance');
    const retrying = enqueue(item('a:1', 'Account/Balance'), null) as Delivery;
    lane(null).q.next();
    lane(null).q.retryAt(retrying, new Date(Date.now() + 60_000));
    const earlier = item('a:1', 'Account/Blocked');
    const newest = item('a:1', 'Account/Balance');
    lane(null).q.add(deliveryOf(earlier), false);            // waits behind the retry in the default lane
    assert.equal(enqueue(newest, 'env2'), 'gated');
    assert.deepEqual(lane(null).supersededHere.map((d) => d.item), [retrying.item]);
    assert.deepEqual(lane('env2').admitted, [], 'the earlier Blocked still holds the key in the default lane');
    lane(null).q.next();
    lane(null).finishHead('a:1');
    assert.deepEqual(lane('env2').admitted.map((d) => d.item), [newest]);
    assert.equal(gate.size, 0);
    const { gate: g2, lane: l2, enqueue: e2 } = gateWith([null, 'env2'], (t) => t === 'Account/Balance');
    const alone = e2(item('a:1', 'Account/Balance'), null) as Delivery;
    l2(null).q.next();
    l2(null).q.retryAt(alone, new Date(Date.now() + 60_000));
    const next2 = item('a:1', 'Account/Balance');
    assert.equal(e2(next2, 'env2'), 'gated');
    assert.deepEqual(l2('env2').admitted.map((d) => d.item), [next2], 'the default lane drained: at once');
    assert.equal(g2.size, 0);
  });

  it('after stop nothing goes on to a lane', () => {
    const { gate, lane, enqueue } = gateWith([null, 'env2']);
    enqueue(item('a:1'), null);
    enqueue(item('a:1'), 'env2');
    gate.stop();
    lane(null).finishHead('a:1');
    assert.deepEqual(lane('env2').admitted, []);
    assert.equal(gate.size, 1, 'still held (durable already)');
  });
});
