// Pure unit tests (no database): the acknowledge stage's contract with route, record and stream.
import assert from 'node:assert/strict';
import type { Item } from '../../src/delivery/item.ts';
import { Acknowledger } from '../../src/pipeline/acknowledge.ts';

function item(i: number): Item {
  return {
    event: { i_event: i, event_type: 'Account/New', variables: { i_account: i }, source_i_event: null },
    handler: 'h', orderKey: `a:${i}`, iAccount: i, commitLsn: null, committedAt: null, resumed: null,
  };
}

describe('unit: Acknowledger', function () {
  it('acknowledges a transaction once every item of it is reported durable, in commit order', () => {
    const acked: bigint[] = [];
    const ack = new Acknowledger((lsn) => acked.push(lsn));
    const t1 = ack.admit(90n)!; const x = item(1); const y = item(2); ack.hold(t1, x); ack.hold(t1, y); ack.close(t1, 100n);
    const t2 = ack.admit(190n)!; const z = item(3); ack.hold(t2, z); ack.close(t2, 200n);
    ack.durable([z]);
    assert.deepEqual(acked, []);
    ack.durable([x]);
    assert.deepEqual(acked, []);
    ack.durable([y, y, item(99)]);   // repeats and items that hold nothing are ignored
    assert.deepEqual(acked, [200n]);
    assert.equal(ack.durableLsn, 200n);
    assert.equal(ack.idle, true);
  });

  it('a slot made anew starts over: the old slot\'s items settle but never advance it; its transactions are admitted from the start', () => {
    const acked: bigint[] = [];
    const ack = new Acknowledger((lsn) => acked.push(lsn));
    const old = ack.admit(4990n)!; const x = item(1); ack.hold(old, x); ack.close(old, 5000n);   // in flight on the old slot
    ack.newSlot(300n);
    assert.deepEqual(acked.splice(0), [0n], 'the stream tells the new slot nothing of the old one');
    assert.equal(ack.durableLsn, 0n);
    assert.equal(ack.idle, true, 'what the old slot admitted holds nothing of the new one');
    const a = ack.admit(190n)!;                                 // below the old slot's positions: admitted
    assert.equal(a.replay, true, 'up to the catch-up\'s position it is a replay');
    const y = item(2); ack.hold(a, y); ack.close(a, 200n);
    ack.durable([x]);                                           // the old item settles: nothing is acknowledged
    assert.deepEqual(acked, []);
    ack.durable([y]);
    assert.deepEqual(acked, [200n]);
    const b = ack.admit(390n)!;
    assert.equal(b.replay, false);
    ack.close(b, 400n);
    assert.deepEqual(acked, [200n, 400n]);
  });

  it('admits a transaction once: a replay after reconnect is refused; the replay horizon marks possible duplicates', () => {
    const ack = new Acknowledger(() => undefined);
    ack.raiseReplayHorizon(150n);
    ack.raiseReplayHorizon(120n);     // only raised
    const a = ack.admit(100n)!;       // its commit starts at 100
    assert.equal(a.replay, true);
    ack.close(a, 110n);               // and ends at 110
    assert.equal(ack.admit(100n), null);
    assert.equal(ack.admit(90n), null);
    const b = ack.admit(110n)!;       // the next commit may start where the last ended
    assert.equal(b.replay, true);
    ack.close(b, 140n);
    const c = ack.admit(160n)!;
    assert.equal(c.replay, false);
  });

  it('a transaction the stream brings again in its middle (a reconnect) is the same admission: what was handed out is known', () => {
    const acked: bigint[] = [];
    const ack = new Acknowledger((lsn) => acked.push(lsn));
    const a = ack.admit(100n)!;
    const x = item(1); ack.hold(a, x);
    ack.handedOut(a, 1000);                          // the first part
    const again = ack.admit(100n)!;                  // reconnected: the transaction from its start
    assert.equal(again, a);
    assert.equal(again.handedOut, 1000);
    ack.handedOut(again, 500);                       // never backwards
    assert.equal(again.handedOut, 1000);
    assert.throws(() => ack.admit(300n), (e: { code?: string }) => e.code === 'ESPF_STREAM_ORDER');
    ack.durable([x]);
    assert.deepEqual(acked, [], 'not closed: nothing is acknowledged');
    ack.close(again, 120n);
    assert.deepEqual(acked, [120n]);
    assert.equal(ack.admit(100n), null);
  });

  it('a slot made anew forgets the transaction the old slot was handing out', () => {
    const ack = new Acknowledger(() => undefined);
    const a = ack.admit(100n)!;
    ack.handedOut(a, 10);
    ack.newSlot(0n);
    const b = ack.admit(50n)!;
    assert.notEqual(b, a);
    assert.equal(b.handedOut, 0);
  });

  it('a keepalive position is acknowledged only when nothing handed out is unsettled', () => {
    const acked: bigint[] = [];
    const ack = new Acknowledger((lsn) => acked.push(lsn));
    const a = ack.admit(100n)!;
    ack.keepalive(90n);                              // a transaction is being handed out
    const x = item(1); ack.hold(a, x); ack.close(a, 120n);
    ack.keepalive(150n);                             // its item is not durable
    assert.deepEqual(acked, []);
    ack.durable([x]);
    assert.deepEqual(acked, [120n]);
    ack.keepalive(150n);
    assert.deepEqual(acked, [120n, 150n]);
    ack.keepalive(140n);                             // never backwards
    assert.equal(ack.durableLsn, 150n);
  });

  it('holds the stream at maxHeld items and lets it go below half of that', async () => {
    const ack = new Acknowledger(() => undefined, 4);
    const a = ack.admit(10n)!;
    const items = [1, 2, 3, 4].map(item);
    for (const i of items) ack.hold(a, i);
    ack.close(a, 20n);
    const room = ack.room();
    assert.ok(room, 'full: the stream waits');
    let released = false;
    void room.then(() => { released = true; });
    ack.durable([items[0]!]);
    await Promise.resolve();
    assert.equal(released, false, '3 held');
    ack.durable([items[1]!]);
    await Promise.resolve();
    assert.equal(released, false, '2 held: not below half');
    ack.durable([items[2]!]);
    await Promise.resolve();
    assert.equal(released, true);
    assert.equal(ack.room(), undefined);
  });
});
