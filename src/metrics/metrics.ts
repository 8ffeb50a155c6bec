import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Db } from '../db/connect.ts';
import { slotLagBytes } from '../db/replication.ts';
import type { Item } from '../delivery/item.ts';
import type { PostResult } from '../delivery/http-client.ts';
import type { DeliveryState } from '../delivery/results-writer.ts';
import type { TargetState } from '../delivery/targets.ts';
import type { StreamEvent } from '../stream/replication.ts';
import type { Sender, SenderObserver } from '../run/sender.ts';

/** Delivery latency buckets, seconds: from a few milliseconds to an hour of retries. */
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];

export interface MetricsOptions {
  /** Queries pg_replication_slots for espf_replication_slot_lag_bytes (omit: no lag series). */
  readonly db?: Db;
  /** How long a slot lag reading is reused, ms (default 2000): scrapes never load the database. */
  readonly slotLagCacheMs?: number;
  /** A shard of a split instance: every series gets the labels shard="K" and shards="N". */
  readonly shard?: { readonly k: number; readonly n: number };
  /** Node.js process metrics (espf_process_*, espf_nodejs_*); default true. */
  readonly processMetrics?: boolean;
}

/** The kind of a finished POST, for espf_attempts_total{outcome}. */
export function attemptOutcome(r: PostResult): 'success' | 'http_error' | 'timeout' | 'connection_error' {
  if (r.ok) return 'success';
  if (r.status !== null) return 'http_error';
  if (r.reason.startsWith('timeout')) return 'timeout';
  return 'connection_error';
}

/** Counts by label values, kept in a Map until a scrape adds them to their prom-client counter. */
class Tally<L extends string> {
  private readonly counts = new Map<string, { readonly labels: Record<L, string>; n: number }>();

  /** `key` identifies the label values (built by the caller without allocating the labels object twice). */
  inc(key: string, labels: Record<L, string>): void {
    const c = this.counts.get(key);
    if (c) c.n++;
    else this.counts.set(key, { labels, n: 1 });
  }

  addTo(counter: Counter<L>): void {
    for (const c of this.counts.values()) {
      if (c.n > 0) counter.inc(c.labels, c.n);
      c.n = 0;
    }
  }
}

/**
 * The Prometheus metrics of one `espf run` (docs/operations.md, "Metrics": every series espf_…).
 * It only listens: counters and gauges move through the SenderObserver hooks
 * (those of the deliver stage's parts: src/delivery/observer.ts); the slot
 * and whether it streams are read from the sender (bind it), the slot lag from
 * pg_replication_slots when scraped.
 */
export class Metrics implements SenderObserver {
  readonly registry = new Registry();
  private sender?: Sender;
  private slotLag?: { at: number; bytes: number | null };
  // Gauges by handler, as the parts last published them.
  private readonly held$ = new Map<string, number>();
  private readonly inFlight$ = new Map<string, number>();
  private readonly targets$ = new Map<string, readonly TargetState[]>();
  private readonly oldest$ = new Map<string, () => Date | null>();
  /** Time waited for tokens, ms, by handler, until a scrape adds it to its counter. */
  private readonly bucketWaits = new Map<string, number>();

  private readonly capturedTotal: Counter<'event_type'>;
  // Counted per event in plain maps, added to the counters above when scraped (cheaper than prom-client's label hashing per event).
  private readonly captured$ = new Tally<'event_type'>();
  private readonly deliveries$ = new Tally<'handler' | 'event_type' | 'outcome'>();
  private readonly attempts$ = new Tally<'handler' | 'outcome'>();
  private readonly dispatchedTotal: Counter<'handler'>;
  private readonly dispatchSourcesTotal: Counter<'handler'>;
  private readonly deliveriesTotal: Counter<'handler' | 'event_type' | 'outcome'>;
  private readonly attemptsTotal: Counter<'handler' | 'outcome'>;
  private readonly latency: Histogram<'handler'>;
  private readonly streamingGauge: Gauge;
  private readonly caughtUpTotal: Counter<'handler'>;
  private readonly slotRecreatedTotal: Counter<'slot'>;
  private streamingOn = false;

  constructor(private readonly opts: MetricsOptions = {}) {
    const self = this; // collect() runs with `this` bound to its metric
    const registers = [this.registry];
    if (opts.shard && opts.shard.n > 1) this.registry.setDefaultLabels({ shard: String(opts.shard.k), shards: String(opts.shard.n) });
    this.capturedTotal = new Counter({
      name: 'espf_events_captured_total', help: 'Events read from the outbox (espf.events) by logical replication, by event type.',
      labelNames: ['event_type'], registers,
      collect() { self.captured$.addTo(this); },
    });
    this.dispatchedTotal = new Counter({
      name: 'espf_events_dispatched_total', help: 'Events a dispatcher produced (inserted into espf.events), by dispatcher.',
      labelNames: ['handler'], registers,
    });
    this.dispatchSourcesTotal = new Counter({
      name: 'espf_dispatch_source_events_total', help: 'Source events a dispatcher consumed, by dispatcher.',
      labelNames: ['handler'], registers,
    });
    this.deliveriesTotal = new Counter({
      name: 'espf_deliveries_total',
      help: 'Delivery outcomes recorded in espf.event_deliveries: delivered (every URL answered 2xx), failed (max_attempts reached), retry (an attempt failed, another follows), superseded (a newer event of a coalescing type for the same account was sent instead), skipped (a handler with request steps has none for the type).',
      labelNames: ['handler', 'event_type', 'outcome'], registers,
      collect() { self.deliveries$.addTo(this); },
    });
    this.attemptsTotal = new Counter({
      name: 'espf_attempts_total', help: 'POSTs to a URL of an http handler, by outcome: success (2xx), http_error (another status), timeout, connection_error.',
      labelNames: ['handler', 'outcome'], registers,
      collect() { self.attempts$.addTo(this); },
    });
    this.latency = new Histogram({
      name: 'espf_delivery_latency_seconds', help: 'From the commit of the source transaction to the 2xx of the last URL, per http handler.',
      labelNames: ['handler'], buckets: LATENCY_BUCKETS, registers,
    });
    this.caughtUpTotal = new Counter({
      name: 'espf_caught_up_events_total',
      help: 'Events no replication slot had carried to a handler, caught up from the outbox, by handler: at the start of this instance (committed before it streamed), or when its slot was missing on reconnect (espf_slot_recreated_total).',
      labelNames: ['handler'], registers,
    });
    this.slotRecreatedTotal = new Counter({
      name: 'espf_slot_recreated_total',
      help: 'Times the replication slot was missing when the stream reconnected (a failover without failover slots, a slot dropped or lost) and was made anew after a catch-up from the outbox.',
      labelNames: ['slot'], registers,
    });
    this.streamingGauge = new Gauge({
      name: 'espf_streaming', help: '1 while the instance streams its replication slot, else 0.', registers,
      collect: () => { this.streamingGauge.set((this.sender?.isStreaming ?? this.streamingOn) ? 1 : 0); },
    });
    new Gauge({
      name: 'espf_queue_depth', help: 'Events held in memory per handler: queued, in flight or waiting for a retry (dispatchers: source events not yet dispatched).',
      labelNames: ['handler'], registers,
      collect() {
        this.reset();
        for (const [handler, n] of self.held$) this.set({ handler }, n);
      },
    });
    new Gauge({
      name: 'espf_target_up', help: 'Circuit breaker of each target URL of an http handler: 1 up, 0 down (only probed; its deliveries wait). Credentials in the URL are shown as ***; i_env: the environment whose settings it belongs to (none for the default row).',
      labelNames: ['handler', 'url', 'i_env'], registers,
      collect() {
        this.reset();
        for (const [handler, states] of self.targets$) {
          for (const t of states) this.set(t.iEnv == null ? { handler, url: t.url } : { handler, url: t.url, i_env: String(t.iEnv) }, t.up ? 1 : 0);
        }
      },
    });
    new Gauge({
      name: 'espf_inflight_requests', help: 'POSTs on the wire per http handler.', labelNames: ['handler'], registers,
      collect() {
        this.reset();
        for (const [handler, n] of self.inFlight$) this.set({ handler }, n);
      },
    });
    new Gauge({
      name: 'espf_oldest_waiting_seconds', help: 'Age (since its commit) of the oldest event waiting at the head of a queue of an http handler; 0 when none waits.',
      labelNames: ['handler'], registers,
      collect() {
        this.reset();
        const now = Date.now();
        for (const [handler, read] of self.oldest$) {
          const t = read();
          this.set({ handler }, t ? Math.max(0, (now - t.getTime()) / 1000) : 0);
        }
      },
    });
    const bucketWait = new Counter({
      name: 'espf_token_bucket_wait_seconds_total', help: 'Time batches of requests of an async http handler waited for tokens of its token bucket.',
      labelNames: ['handler'], registers,
      collect: () => { this.collectBucketWaits(bucketWait); },
    });
    if (opts.db) {
      new Gauge({
        name: 'espf_replication_slot_lag_bytes', help: 'WAL the replication slot of this instance retains: pg_current_wal_lsn() - confirmed_flush_lsn.',
        labelNames: ['slot'], registers,
        async collect() {
          this.reset();
          const slot = self.sender?.slot;
          if (!slot) return;
          const bytes = await self.readSlotLag(slot);
          if (bytes !== null) this.set({ slot }, bytes);
        },
      });
    }
    if (opts.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'espf_' });
  }

  /** The sender whose slot and streaming state the gauges read. */
  bind(sender: Sender): this {
    this.sender = sender;
    this.slotRecreatedTotal.inc({ slot: sender.slot }, 0); // shown as 0 until it happens
    return this;
  }

  // SenderObserver hooks: arrow functions, since the sender passes them on unbound.

  readonly captured = (events: readonly StreamEvent[]): void => {
    for (const e of events) this.captured$.inc(e.event_type, { event_type: e.event_type });
  };

  readonly attempt = (handler: string, result: PostResult): void => {
    const outcome = attemptOutcome(result);
    this.attempts$.inc(`${handler}\0${outcome}`, { handler, outcome });
  };

  readonly outcome = (item: Item, state: DeliveryState): void => {
    if (state === 'PENDING') return; // parked behind an earlier event: not the outcome of an attempt
    const outcome = state === 'DELIVERED' ? 'delivered' : state === 'FAILED' ? 'failed' : state === 'SUPERSEDED' ? 'superseded' : state === 'SKIPPED' ? 'skipped' : 'retry';
    this.deliveries$.inc(`${item.handler}\0${item.event.event_type}\0${outcome}`, { handler: item.handler, event_type: item.event.event_type, outcome });
    if (state === 'DELIVERED' && item.committedAt) {
      this.latency.observe({ handler: item.handler }, Math.max(0, (Date.now() - item.committedAt.getTime()) / 1000));
    }
  };

  readonly dispatched = (handler: string, sources: number, produced: number): void => {
    this.dispatchSourcesTotal.inc({ handler }, sources);
    this.dispatchedTotal.inc({ handler }, produced);
  };

  readonly caughtUp = (handler: string, events: number): void => {
    this.caughtUpTotal.inc({ handler }, events);
  };

  readonly slotRecreated = (slot: string): void => {
    this.slotRecreatedTotal.inc({ slot });
  };

  readonly streaming = (on: boolean): void => {
    this.streamingOn = on;
  };

  readonly held = (handler: string, items: number): void => {
    this.held$.set(handler, items);
  };

  readonly inFlight = (handler: string, requests: number): void => {
    this.inFlight$.set(handler, requests);
  };

  readonly bucketWaited = (handler: string, ms: number): void => {
    this.bucketWaits.set(handler, (this.bucketWaits.get(handler) ?? 0) + ms);
  };

  readonly targets = (handler: string, states: readonly TargetState[]): void => {
    this.targets$.set(handler, states);
  };

  readonly oldestWaiting = (handler: string, read: () => Date | null): void => {
    this.oldest$.set(handler, read);
  };

  /** The Prometheus text exposition of every series. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private collectBucketWaits(counter: Counter<'handler'>): void {
    // A handler shows 0 from when it has a bucket (src/delivery/attempter.ts publishes a first wait of 0).
    for (const [handler, ms] of this.bucketWaits) {
      counter.inc({ handler }, ms / 1000);
      this.bucketWaits.set(handler, 0);
    }
  }

  private async readSlotLag(slot: string): Promise<number | null> {
    const now = Date.now();
    if (this.slotLag && now - this.slotLag.at < (this.opts.slotLagCacheMs ?? 2000)) return this.slotLag.bytes;
    let bytes: number | null = null;
    try {
      bytes = await slotLagBytes(this.opts.db!, slot);
    } catch {
      bytes = this.slotLag?.bytes ?? null; // keep the last reading while the database does not answer
    }
    this.slotLag = { at: now, bytes };
    return bytes;
  }
}
