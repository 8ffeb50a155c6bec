// Pure unit tests (no database): every retry delay in espf.
import assert from 'node:assert/strict';
import { Backoff, doubling, retryDelayMs } from '../../src/backoff.ts';

describe('unit: backoff', function () {
  it('doubles from the first delay and stops at the cap', () => {
    assert.deepEqual([1, 2, 3, 4, 5, 6, 7].map((n) => doubling(n, 100, 5000)), [100, 200, 400, 800, 1600, 3200, 5000]);
    assert.equal(doubling(0, 100, 5000), 100);
  });

  it('delivery retries: equal jitter between half and all of the doubled delay, capped', () => {
    assert.equal(retryDelayMs(1, 2, 60, null, () => 0), 1000);
    assert.equal(retryDelayMs(1, 2, 60, null, () => 1), 2000);
    assert.equal(retryDelayMs(3, 2, 60, null, () => 1), 8000);
    assert.equal(retryDelayMs(20, 2, 60, null, () => 1), 60_000);
    assert.equal(retryDelayMs(20, 2, 60, null, () => 0), 30_000);
  });

  it('delivery retries: a Retry-After is honoured up to retry_max_delay', () => {
    assert.equal(retryDelayMs(1, 1, 60, 10_000, () => 0), 10_000);
    assert.equal(retryDelayMs(1, 1, 60, 600_000, () => 0), 60_000);
    assert.equal(retryDelayMs(4, 1, 60, 10, () => 1), 8000);
  });

  it('a loop backoff: next wait doubles per failure, resets on success, a wait can be cut short', async () => {
    const b = new Backoff(10, 40);
    assert.equal(b.nextMs, 10);
    await b.wait();
    assert.equal(b.nextMs, 20);
    await b.wait();
    await b.wait();
    assert.equal(b.nextMs, 40);
    b.succeeded();
    assert.equal(b.nextMs, 10);
    const long = new Backoff(60_000, 60_000);
    const started = Date.now();
    const waiting = long.wait();
    long.interrupt();
    await waiting;
    assert.ok(Date.now() - started < 1000);
  });
});
