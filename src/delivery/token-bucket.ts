import Bottleneck from 'bottleneck';

const REFILL_MS = 20;

/**
 * The token bucket of an async http handler (README, "2. Configure a handler"), on Bottleneck.
 * Requests are scheduled in weighted batches (weight = requests), never one
 * job per request: Bottleneck costs about a millisecond per job.
 *
 * Tokens accrue at token_rate per second. The bucket holds token_burstiness −
 * token_rate tokens (at least 1), so that a full bucket plus one second of
 * refill stays within token_burstiness in any one-second window; when the
 * burstiness is not above the rate, the bucket holds token_burstiness.
 *
 * Refill is ours, not Bottleneck's reservoirIncrease*: that one restarts its
 * interval from the heartbeat tick that fired it, so under load it drifts and
 * under-delivers (about 45/s for 50/s). We add exactly the tokens that
 * accrued since the last refill, measured on a monotonic clock.
 *
 * A Bottleneck job costs milliseconds (its datastore yields to the event loop
 * several times), which would add to every event's latency. So tokens are
 * fetched from Bottleneck ahead of need into a local purse that sends draw
 * from synchronously; the refill counts the purse as part of the bucket, so
 * purse + reservoir never exceed the capacity and the limit stays exact.
 */
export class TokenBucket {
  private readonly limiter: Bottleneck;
  private readonly timer: NodeJS.Timeout;
  private last = performance.now();
  private accrued = 0;
  private refilling = false;
  private purse = 0;
  private fetching = false;
  private stopped = false;
  /** Called when fetched tokens are in the purse. */
  onTokens: () => void = () => undefined;
  /** Called with each wait for tokens, in ms (what `waitedMs` adds up). */
  onWaited: (ms: number) => void = () => undefined;
  readonly rate: number;
  readonly burst: number;
  readonly capacity: number;
  waitedMs = 0;     // total time batches waited for tokens (a metric)

  constructor(rate: number, burst: number) {
    this.rate = rate;
    this.burst = burst;
    this.capacity = Math.max(1, burst > rate ? Math.floor(burst - rate) : burst);
    // The bucket starts empty and fills at token_rate: a sender (re)started in
    // front of a backlog does not open with a full burst on top of the rate.
    this.limiter = new Bottleneck({ reservoir: 0, maxConcurrent: null });
    this.timer = setInterval(() => void this.refill(), REFILL_MS);
    this.timer.unref();
    this.fetch();
  }

  private async refill(): Promise<void> {
    if (this.refilling) return;
    this.refilling = true;
    try {
      const now = performance.now();
      this.accrued += ((now - this.last) * this.rate) / 1000;
      this.last = now;
      const whole = Math.floor(this.accrued);
      if (whole < 1) return;
      this.accrued -= whole;
      const current = (await this.limiter.currentReservoir()) ?? 0;
      const add = Math.min(whole, this.capacity - current - this.purse);
      if (add > 0) await this.limiter.incrementReservoir(add);
    } finally {
      this.refilling = false;
    }
  }

  /** Takes up to `max` tokens now, without waiting; fetches more when the purse runs dry. */
  takeNow(max: number): number {
    const n = Math.min(max, this.purse);
    this.purse -= n;
    if (this.purse === 0) this.fetch();
    return n;
  }

  /** Moves what the reservoir holds (at least one token, waiting for it) into the purse. */
  fetch(): void {
    if (this.fetching || this.stopped) return;
    this.fetching = true;
    void (async () => {
      try {
        const r = Math.floor((await this.limiter.currentReservoir()) ?? 0);
        const k = Math.max(1, Math.min(r, this.capacity));
        const started = performance.now();
        await this.limiter.schedule({ weight: k }, async () => undefined);
        if (r === 0) {
          const waited = performance.now() - started;
          this.waitedMs += waited;
          this.onWaited(waited);
        }
        this.purse += k;
      } catch {
        // stopped: the waiting job was dropped
      } finally {
        this.fetching = false;
      }
      if (!this.stopped) this.onTokens();
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.limiter.stop({ dropWaitingJobs: true }).catch(() => undefined);
    await this.limiter.disconnect();
  }
}
