// Pure unit tests (no database): the token bucket of an async http handler.
import assert from 'node:assert/strict';
import { TokenBucket } from '../../src/delivery/token-bucket.ts';

/** Takes every token the bucket gives for `ms`, as a sender would. */
async function drain(b: TokenBucket, ms: number): Promise<number> {
  let taken = 0;
  b.onTokens = () => { taken += b.takeNow(1_000_000); };
  await new Promise((r) => setTimeout(r, ms));
  taken += b.takeNow(1_000_000);
  return taken;
}

describe('unit: token bucket', function () {
  it('holds token_burstiness − token_rate tokens (at least 1), or token_burstiness when that is not above the rate', async () => {
    const cases: [number, number, number][] = [[10, 50, 40], [10, 10, 10], [10, 5, 5], [10, 10.5, 1]];
    for (const [rate, burst, capacity] of cases) {
      const b = new TokenBucket(rate, burst);
      assert.equal(b.capacity, capacity, `rate ${rate}, burst ${burst}`);
      await b.stop();
    }
  });

  it('starts empty: nothing to take at once', async () => {
    const b = new TokenBucket(1000, 5000);
    assert.equal(b.takeNow(100), 0);
    await b.stop();
  });

  it('never gives more than the capacity plus what accrued at token_rate', async () => {
    const b = new TokenBucket(200, 250);
    const started = performance.now();
    const taken = await drain(b, 400);
    const elapsed = (performance.now() - started) / 1000;
    await b.stop();
    assert.ok(taken <= b.capacity + Math.ceil(200 * elapsed), `took ${taken} in ${elapsed.toFixed(3)} s`);
    assert.ok(taken > 0, 'tokens accrue');
  });

  it('stopped: no more tokens', async () => {
    const b = new TokenBucket(1000, 1000);
    await b.stop();
    const taken = await drain(b, 100);
    assert.equal(taken, 0);
  });
});
