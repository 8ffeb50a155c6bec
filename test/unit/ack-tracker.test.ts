// Pure unit tests (no database): which WAL position may be acknowledged.
import assert from 'node:assert/strict';
import { AckTracker } from '../../src/pipeline/ack-tracker.ts';

describe('unit: AckTracker', function () {
  it('advances over the settled prefix only, never past an unsettled ticket', () => {
    const seen: bigint[] = [];
    const t = new AckTracker(0n, (lsn) => seen.push(lsn));
    const a = t.open(10n); t.hold(a); t.release(a);      // a: one outcome pending
    const b = t.open(20n); t.release(b);                 // b: nothing to deliver
    const c = t.open(30n); t.hold(c); t.release(c);
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

  it('a pass-through position (heartbeat) advances only once everything before it is settled', () => {
    const seen: bigint[] = [];
    const t = new AckTracker(0n, (lsn) => seen.push(lsn));
    const a = t.open(10n); t.hold(a); t.release(a);
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
    for (let i = 1; i <= 5000; i++) { const k = t.open(100n + BigInt(i)); t.hold(k); t.release(k); open.push(k); }
    for (const k of open.slice(0, 4000)) t.release(k);
    assert.equal(t.durableLsn, 4100n);
    assert.equal(t.unsettled, 1000);
    for (const k of open.slice(4000)) t.release(k);
    assert.equal(t.durableLsn, 5100n);
    assert.equal(t.unsettled, 0);
  });

  it('retracts the last ticket while only its hand-out holds it', () => {
    const t = new AckTracker(0n, () => undefined);
    const a = t.open(10n); t.release(a);
    const b = t.open(20n);
    assert.equal(t.retract(a), false, 'not the last ticket');
    assert.equal(t.retract(b), true);
    assert.equal(t.unsettled, 0);
    const c = t.open(30n); t.hold(c);
    assert.equal(t.retract(c), false, 'an item already holds it');
  });
});
