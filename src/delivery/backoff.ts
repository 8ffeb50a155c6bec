/**
 * Delay before attempt n+1 after n failed attempts: exponential from
 * retry_delay, capped at retry_max_delay, with "equal jitter" (half fixed, half
 * random) so that many accounts failing together do not retry in lockstep.
 * A Retry-After from the receiver (429/503) is honoured, up to retry_max_delay.
 */
export function retryDelayMs(failedAttempts: number, retryDelayS: number, retryMaxDelayS: number, retryAfterMs: number | null, random = Math.random): number {
  const base = Math.min(retryMaxDelayS, retryDelayS * 2 ** Math.max(0, failedAttempts - 1)) * 1000;
  const jittered = base / 2 + random() * (base / 2);
  const wanted = retryAfterMs != null ? Math.max(jittered, retryAfterMs) : jittered;
  return Math.round(Math.min(wanted, retryMaxDelayS * 1000));
}
