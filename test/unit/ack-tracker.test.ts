// Pure unit tests (no database): which WAL position may be acknowledged.
import assert from 'node:assert/strict';
import { AckTracker } from '../../src/pipeline/ack-tracker.ts';

describe('unit: AckTracker', function () {
  it('advances over the settled prefix only, never past an unsettled ticket', () => {
    const seen: bigint[] = [];
    const t = new AckTracker(0n, (lsn) => seen.push(lsn));
    const a = t.open(); t.hold(a); t.close(a, 10n);      // a: one outcome pending
    const b = t.open(); t.close(b, 20n);                 // b: nothing to deliver
    const c = t.open(); t.hold(c); t.close(c, 30n);
    assert.equal(t.durableLsn, 0n);
    assert.equal(t.unsettled, 3);
    t.release(c);                                        // c settles first: a still holds the slot
    assert.equal(t.durableLsn, 0n);
    assert.deepEqual(seen, []);
    t.release(a);                                        // a settles: a, b and c are a settled prefix
    assert.equal(t.durableLsn, 30n);
    assert.deepEqual(seen, [30n]);
    assert.equal(t.unsettled, 0);
  });

  it('a ticket whose outcomes are all durable settles only when it is closed (its last part handed out)', () => {
    const seen: bigint[] = [];
    const t = new AckTracker(0n, (lsn) => seen.push(lsn));
    const a = t.open();
    t.hold(a); t.hold(a);                               // the first part: two outcomes
    t.release(a); t.release(a);                         // both durable, more parts to come
    assert.equal(t.unsettled, 1);
    assert.deepEqual(seen, []);
    t.hold(a); t.close(a, 50n);                         // the last part: one more outcome
    assert.deepEqual(seen, []);
    t.release(a);
    assert.deepEqual(seen, [50n]);
  });

  it('a pass-through position (heartbeat) advances only once everything before it is settled', () => {
    const seen: bigint[] = [];
    const t = new AckTracker(0n, (lsn) => seen.push(lsn));
    const a = t.open(); t.hold(a); t.close(a, 10n);
    t.passThrough(15n);
    assert.equal(t.durableLsn, 0n);
    t.release(a);
    assert.equal(t.durableLsn, 15n);
    t.passThrough(40n);
    assert.deepEqual(seen, [15n, 40n]);
  });

  it('never moves backwards and keeps working past its compaction threshold', () => {
    const t = new AckTracker(100n, () => undefined);
    t.passThrough(50n);
    assert.equal(t.durableLsn, 100n);
    const open = [];
    for (let i = 1; i <= 5000; i++) { const k = t.open(); t.hold(k); t.close(k, 100n + BigInt(i)); open.push(k); }
    for (const k of open.slice(0, 4000)) t.release(k);
    assert.equal(t.durableLsn, 4100n);
    assert.equal(t.unsettled, 1000);
    for (const k of open.slice(4000)) t.release(k);
    assert.equal(t.durableLsn, 5100n);
    assert.equal(t.unsettled, 0);
  });
});
