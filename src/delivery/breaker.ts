/**
 * A circuit breaker for one target URL of an http handler (docs/operations.md,
 * "A receiver is down"). Pure: no timers, no I/O; the caller passes the time.
 *
 *   up    requests go as usual. `failures` consecutive attempts that say the
 *         target is down (connection error, timeout, 5xx, 408, 429) turn it down.
 *   down  no regular requests: one probe at a time, the first `probeDelayMs`
 *         after it went down, each next one twice as late (at most
 *         `probeMaxDelayMs`). Any answer that shows the target is there (a 2xx,
 *         or a 4xx other than 408 and 429, which refuses one event but says
 *         nothing about the target) turns it up again.
 */

/** What one attempt says about the target. */
export type Verdict = 'ok' | 'refused' | 'down';

export interface BreakerSettings {
  readonly failures: number;
  readonly probeDelayMs: number;
  readonly probeMaxDelayMs: number;
}

/** The result of one POST, as much of it as the breaker needs. */
export interface AttemptResult {
  readonly ok: boolean;
  readonly status: number | null;
}

/** 2xx: ok. 408, 429, 5xx, no status (timeout, connection error): down. Any other status: refused. */
export function verdictOf(r: AttemptResult): Verdict {
  if (r.ok) return 'ok';
  const s = r.status;
  if (s === null || s >= 500 || s === 408 || s === 429) return 'down';
  return 'refused';
}

export type BreakerChange = 'up' | 'down';

export class CircuitBreaker {
  private isUp = true;
  private consecutive = 0;
  private delayMs = 0;
  private probeInFlight = false;
  /** When the state last changed (epoch ms). */
  since: number;
  /** Consecutive failed attempts counted so far (while up), or when it went down. */
  failuresAtChange = 0;
  /** Probes sent since the target went down. */
  probes = 0;
  /** While down: when the next probe may go (epoch ms). */
  nextProbeAt = 0;

  constructor(private settings: BreakerSettings, now: number) {
    this.since = now;
  }

  get up(): boolean { return this.isUp; }
  get probing(): boolean { return this.probeInFlight; }
  get consecutiveFailures(): number { return this.consecutive; }

  /** New settings apply from the next failure or probe. */
  configure(settings: BreakerSettings): void {
    this.settings = settings;
  }

  /** While down: a probe may go now (none in flight and its time has come). */
  canProbe(now: number): boolean {
    return !this.isUp && !this.probeInFlight && now >= this.nextProbeAt;
  }

  /** While down: ms until a probe may go (0: now; Infinity: one is in flight). */
  probeWaitMs(now: number): number {
    if (this.isUp) return 0;
    if (this.probeInFlight) return Infinity;
    return Math.max(0, this.nextProbeAt - now);
  }

  /** Down from the start (a restart during an outage): the first probe after probeDelayMs. */
  restoreDown(now: number, since: number, probes: number): void {
    this.isUp = false;
    this.since = since;
    this.probes = probes;
    this.consecutive = this.settings.failures;
    this.failuresAtChange = this.settings.failures;
    this.delayMs = this.settings.probeDelayMs;
    this.nextProbeAt = now + this.delayMs;
  }

  /** A probe request goes out. */
  startProbe(): void {
    this.probeInFlight = true;
    this.probes++;
  }

  /**
   * The verdict of an attempt to this target (`probe`: it was the probe).
   * Returns the change of state it caused, if any.
   */
  record(verdict: Verdict, now: number, probe = false): BreakerChange | null {
    if (probe) this.probeInFlight = false;
    if (verdict !== 'down') {
      this.consecutive = 0;
      if (this.isUp) return null;
      this.isUp = true;
      this.since = now;
      this.failuresAtChange = 0;
      this.probes = 0;
      this.nextProbeAt = 0;
      return 'up';
    }
    if (this.isUp) {
      this.consecutive++;
      if (this.consecutive < this.settings.failures) return null;
      this.isUp = false;
      this.since = now;
      this.failuresAtChange = this.consecutive;
      this.probes = 0;
      this.delayMs = this.settings.probeDelayMs;
      this.nextProbeAt = now + this.delayMs;
      return 'down';
    }
    // Down: a failed probe pushes the next one further out; a request that was
    // already on the wire when the target went down changes nothing.
    if (probe) {
      this.delayMs = Math.min(this.settings.probeMaxDelayMs, Math.max(this.settings.probeDelayMs, this.delayMs * 2));
      this.nextProbeAt = now + this.delayMs;
    }
    return null;
  }
}
