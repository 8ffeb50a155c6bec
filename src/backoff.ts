/**
 * Every wait-and-try-again in espf doubles from a first delay up to a cap:
 * the retry of a delivery (with jitter, in seconds from the handler row) and
 * the retry of a database write or of the replication connection (in ms).
 */

/**
 * The longest wait one Node timer holds (2^31 − 1 ms, about 24.8 days); a
 * longer setTimeout fires after 1 ms. Longer waits are re-armed in steps.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** The largest retry_delay and retry_max_delay the database accepts (sql/020_config_checks.sql): 7 days. */
export const MAX_RETRY_DELAY_S = 604_800;

/** The n-th delay (n ≥ 1) of a doubling series starting at `first`, never above `max`. */
export function doubling(n: number, first: number, max: number): number {
  return Math.min(max, first * 2 ** Math.max(0, n - 1));
}

/**
 * Delay before attempt n+1 after n failed attempts: exponential from
 * retry_delay, capped at retry_max_delay, with "equal jitter" (half fixed, half
 * random) so that many accounts failing together do not retry in lockstep.
 * A Retry-After from the receiver (429/503) is honoured, up to retry_max_delay.
 * Settings that are not finite numbers (a row written before the database
 * refused them) count as MAX_RETRY_DELAY_S: never a hot loop.
 */
export function retryDelayMs(failedAttempts: number, retryDelayS: number, retryMaxDelayS: number, retryAfterMs: number | null, random = Math.random): number {
  const finite = (s: number) => (Number.isFinite(s) && s > 0 ? Math.min(s, MAX_RETRY_DELAY_S) : MAX_RETRY_DELAY_S);
  const maxS = finite(retryMaxDelayS);
  const base = doubling(failedAttempts, finite(retryDelayS), maxS) * 1000;
  const jittered = base / 2 + random() * (base / 2);
  const wanted = retryAfterMs != null && Number.isFinite(retryAfterMs) ? Math.max(jittered, retryAfterMs) : jittered;
  return Math.round(Math.min(wanted, maxS * 1000));
}

/** Consecutive failures of one loop (a batch write, a connection): the next wait, reset on success. */
export class Backoff {
  private failures = 0;
  private timer?: NodeJS.Timeout;
  private wake?: () => void;

  constructor(private readonly firstMs = 100, private readonly maxMs = 5000) {}

  /** The wait after the failure just seen. */
  get nextMs(): number { return doubling(this.failures + 1, this.firstMs, this.maxMs); }

  succeeded(): void { this.failures = 0; }

  /** Waits `nextMs` (cut short by `interrupt()`), counting one more failure. */
  async wait(): Promise<void> {
    const ms = this.nextMs;
    this.failures++;
    await new Promise<void>((resolve) => {
      this.wake = resolve;
      this.timer = setTimeout(resolve, ms);
    });
    this.wake = undefined;
  }

  /** Ends a wait now (on stop). */
  interrupt(): void {
    clearTimeout(this.timer);
    this.wake?.();
  }
}
