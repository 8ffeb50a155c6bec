// Pure unit tests (no database): what becomes of a delivery after one attempt.
import assert from 'node:assert/strict';
import type { HttpSettings } from '../../src/config/snapshot.ts';
import type { AttemptOutcome } from '../../src/delivery/attempter.ts';
import type { PostResult } from '../../src/delivery/http-client.ts';
import { decide } from '../../src/delivery/outcome-policy.ts';

const s = { url: ['http://a', 'http://b'], max_attempts: 3, retry_delay: 1, retry_max_delay: 10 } as unknown as HttpSettings;
const ok: PostResult = { ok: true, status: 200, durationMs: 1 };
const boom: PostResult = { ok: false, status: 500, reason: 'HTTP 500', retryAfterMs: null, durationMs: 1 };
const outcome = (last: PostResult, more: Partial<AttemptOutcome> = {}): AttemptOutcome => ({ last, complete: last.ok, targetDown: false, ...more });
const half = () => 0.5;

describe('outcome policy (pure)', () => {
  it('delivered once every URL answered 2xx', () => {
    assert.deepEqual(decide(outcome(ok), s, 1), { kind: 'delivered' });
    assert.deepEqual(decide(outcome(boom, { complete: true }), s, 3), { kind: 'delivered' });
  });

  it('a failed attempt is retried after a doubling delay with jitter, until max_attempts', () => {
    assert.deepEqual(decide(outcome(boom), s, 1, half), { kind: 'retry', delayMs: 750 });
    assert.deepEqual(decide(outcome(boom), s, 2, half), { kind: 'retry', delayMs: 1500 });
    assert.deepEqual(decide(outcome(boom), s, 3, half), { kind: 'failed' });
  });

  it('honours Retry-After up to retry_max_delay', () => {
    const later: PostResult = { ...boom, status: 429, retryAfterMs: 5000 } as PostResult;
    assert.deepEqual(decide(outcome(later), s, 1, half), { kind: 'retry', delayMs: 5000 });
    const much: PostResult = { ...boom, status: 429, retryAfterMs: 60_000 } as PostResult;
    assert.deepEqual(decide(outcome(much), s, 1, half), { kind: 'retry', delayMs: 10_000 });
  });

  it('an error no retry can mend fails at once; so does a handler without URL', () => {
    const permanent: PostResult = { ...boom, status: null, permanent: true } as PostResult;
    assert.deepEqual(decide(outcome(permanent), s, 1), { kind: 'failed' });
    assert.deepEqual(decide(outcome(boom), null, 1), { kind: 'failed' });
  });

  it('an attempt that met a target that is down is parked, whatever the count', () => {
    assert.deepEqual(decide(outcome(boom, { targetDown: true }), s, 3), { kind: 'parked' });
    assert.deepEqual(decide(outcome(boom, { targetDown: true }), s, 0), { kind: 'parked' });
  });
});
