import type { HttpSettings } from '../config/snapshot.ts';
import { retryDelayMs } from '../backoff.ts';
import type { AttemptOutcome } from './attempter.ts';

/** What becomes of a delivery after one attempt. */
export type Verdict =
  /** Every URL answered 2xx. */
  | { readonly kind: 'delivered' }
  /** Failed for good: max_attempts reached, an error no retry can mend, or the handler has no URL. */
  | { readonly kind: 'failed' }
  /** Another attempt after `delayMs`. */
  | { readonly kind: 'retry'; readonly delayMs: number }
  /** It met a target that is down: the attempt does not count; it waits for the next probe (docs/operations.md, "A receiver is down"). */
  | { readonly kind: 'parked' };

const DELIVERED: Verdict = { kind: 'delivered' };
const FAILED: Verdict = { kind: 'failed' };
const PARKED: Verdict = { kind: 'parked' };

/**
 * The outcome policy of an http handler, pure: from one attempt's outcome,
 * the handler's settings (null: disabled or no URL) and the attempts counted
 * so far (this one included, unless it met a target that is down). The retry
 * delay doubles from retry_delay up to retry_max_delay with jitter
 * (`random`), and honours a receiver's Retry-After (src/backoff.ts).
 */
export function decide(o: AttemptOutcome, s: HttpSettings | null, attempts: number, random: () => number = Math.random): Verdict {
  if (o.complete) return DELIVERED;
  if (s && o.targetDown) return PARKED;
  const r = o.last;
  if (!s || attempts >= s.max_attempts || (!r.ok && r.permanent)) return FAILED;
  return { kind: 'retry', delayMs: retryDelayMs(attempts, s.retry_delay, s.retry_max_delay, r.ok ? null : r.retryAfterMs, random) };
}
