import Bottleneck from 'bottleneck';

/**
 * The token bucket of an async http handler (contract §6), on Bottleneck.
 * Requests are scheduled in weighted batches (weight = requests), never one
 * job per request: Bottleneck costs about a millisecond per job.
 *
 * Tokens accrue at token_rate per second. The bucket holds token_burstiness −
 * token_rate tokens (at least 1), so that a full bucket plus one second of
 * refill stays within token_burstiness in any one-second window; when the
 * burstiness is not above the rate, the bucket holds token_burstiness.
 */
export class TokenBucket {
  private readonly limiter: Bottleneck;
  readonly rate: number;
  readonly burst: number;
  readonly capacity: number;
  waitedMs = 0;     // total time batches waited for tokens (a metric)

  constructor(rate: number, burst: number) {
    this.rate = rate;
    this.burst = burst;
    this.capacity = Math.max(1, burst > rate ? Math.floor(burst - rate) : burst);
    const intervalMs = Math.max(100, Math.ceil(1000 / rate));
    this.limiter = new Bottleneck({
      reservoir: this.capacity,
      reservoirIncreaseInterval: intervalMs,
      reservoirIncreaseAmount: (rate * intervalMs) / 1000,
      reservoirIncreaseMaximum: this.capacity,
      heartbeatInterval: Math.min(50, intervalMs),
      maxConcurrent: null,
    });
  }

  /** How many requests may go now without waiting (at least 1: that one waits for its token). */
  async available(max: number): Promise<number> {
    const r = (await this.limiter.currentReservoir()) ?? this.capacity;
    return Math.max(1, Math.min(max, Math.floor(r), this.capacity));
  }

  /** Resolves when `n` tokens are taken. */
  async take(n: number): Promise<void> {
    const started = performance.now();
    await this.limiter.schedule({ weight: n, expiration: undefined }, async () => undefined);
    this.waitedMs += performance.now() - started;
  }

  async stop(): Promise<void> {
    await this.limiter.stop({ dropWaitingJobs: true }).catch(() => undefined);
    await this.limiter.disconnect();
  }
}
