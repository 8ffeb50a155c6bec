import type { HandlerConfig, HttpSettings } from '../config/snapshot.ts';
import type { AttemptLine, Logger, ProvisioningLog } from '../log/logger.ts';
import { MAX_TIMER_MS, retryDelayMs } from '../backoff.ts';
import { HttpClient, requestBody, type PostResult } from './http-client.ts';
import type { Item } from './item.ts';
import type { Outcome } from './results-writer.ts';
import { Fifo } from './fifo.ts';
import { redactUrl } from '../security/redact.ts';
import { TokenBucket } from './token-bucket.ts';

const MAX_IN_FLIGHT = 256;    // requests of one handler on the wire at once (undici pools 128 connections per origin)

export interface HttpHandlerDeps {
  readonly instance: string;
  /** The record stage: every outcome (DELIVERED, FAILED, RETRY, PENDING) goes here. */
  readonly record: (item: Item, outcome: Outcome) => void;
  readonly plog: ProvisioningLog;
  readonly log: Logger;
  /** The handler's current configuration (live). */
  readonly config: () => HandlerConfig | undefined;
  readonly observe?: (item: Item, attempt: PostResult & { url: string }) => void;
  readonly outcome?: (item: Item, state: Outcome['state']) => void;
}

/**
 * The deliver stage of one http handler. Events of one key (account) form
 * a queue whose head alone is sent; different keys proceed in parallel, as
 * fast as the token bucket allows (async) or one request at a time (sync).
 * A failed head waits for its retry in espf.event_deliveries (RETRY), and the
 * events behind it are recorded as PENDING, so the slot can move on.
 * It reports outcomes to the record stage and knows nothing of WAL positions.
 */
export class HttpHandler {
  readonly name: string;
  private readonly keys = new Map<string, Item[]>();
  private readonly held = new Set<number>();     // i_event of every item in `keys`
  private readonly ready = new Fifo<Item>();
  private readonly timers = new Map<Item, NodeJS.Timeout>();
  private readonly retrying = new Set<string>();
  private readonly client: HttpClient;
  private bucket?: TokenBucket;
  private inFlight = 0;
  private stopping = false;
  private drained: (() => void)[] = [];

  constructor(name: string, private readonly deps: HttpHandlerDeps) {
    this.name = name;
    this.client = new HttpClient(deps.config()?.http?.ca_file ?? null);
  }

  /** Items held in memory (queued, in flight or waiting for a retry). */
  get size(): number {
    let n = 0;
    for (const q of this.keys.values()) n += q.length;
    return n;
  }
  get inflight(): number { return this.inFlight; }
  /** The token bucket of an async handler once it has sent (its `waitedMs` is a metric); rebuilt when the rate changes. */
  get tokenBucket(): Readonly<Pick<TokenBucket, 'waitedMs'>> | undefined { return this.bucket; }
  get oldestWaitingSince(): Date | null {
    let oldest: Date | null = null;
    for (const q of this.keys.values()) {
      const t = q[0]?.committedAt;
      if (t && (!oldest || t < oldest)) oldest = t;
    }
    return oldest;
  }

  /** True if this event is queued, in flight or waiting for a retry here. */
  holds(iEvent: number): boolean {
    return this.held.has(iEvent);
  }

  enqueue(item: Item): void {
    this.held.add(item.event.i_event);
    let q = this.keys.get(item.orderKey);
    if (q && this.deps.config()?.coalesce?.has(item.event.event_type)) q = this.supersedeOlder(q, item);
    if (!q) {
      this.keys.set(item.orderKey, [item]);
      this.makeReady(item);
      return;
    }
    q.push(item);
    // Behind a failing event it may wait long: make it durable now so the slot moves on.
    if (this.retrying.has(item.orderKey)) this.park(item);
  }

  /**
   * Coalescing (espf.event_types.coalesce): the older events of the item's type
   * that wait in its key's queue, not on the wire, are superseded by it: recorded
   * as SUPERSEDED and never sent. Returns the queue, or undefined if it emptied.
   */
  private supersedeOlder(q: Item[], item: Item): Item[] | undefined {
    const type = item.event.event_type;
    for (let i = q.length - 1; i >= 1; i--) {
      if (q[i]!.event.event_type === type) this.supersede(q.splice(i, 1)[0]!);
    }
    const head = q[0]!;
    const timer = this.timers.get(head);
    if (head.event.event_type !== type || !timer) return q; // the head is on the wire, or of another type
    clearTimeout(timer); // it was waiting for its retry
    this.timers.delete(head);
    this.retrying.delete(item.orderKey);
    q.shift();
    this.supersede(head);
    if (q.length === 0) {
      this.keys.delete(item.orderKey);
      return undefined;
    }
    this.makeReady(q[0]!);
    return q;
  }

  private supersede(item: Item): void {
    this.held.delete(item.event.i_event);
    this.record(item, { state: 'SUPERSEDED', at: new Date() });
  }

  private makeReady(item: Item): void {
    const wait = item.nextAttemptAt ? item.nextAttemptAt.getTime() - Date.now() : 0;
    if (wait > 0) {
      this.retrying.add(item.orderKey);
      this.timers.set(item, setTimeout(() => {
        this.timers.delete(item);
        // A wait longer than one timer holds is re-armed until it is over: nothing fires early.
        if (wait > MAX_TIMER_MS) { this.makeReady(item); return; }
        this.retrying.delete(item.orderKey);
        this.ready.push(item);
        this.pump();
      }, Math.min(wait, MAX_TIMER_MS)));
      return;
    }
    this.ready.push(item);
    this.pump();
  }

  /** Configuration changed (enabled again, new rate): rebuild the bucket and resume. */
  reconfigure(): void {
    const h = this.deps.config();
    if (h?.http && this.bucket && (this.bucket.rate !== h.http.token_rate || this.bucket.burst !== h.http.token_burstiness)) {
      const old = this.bucket;
      this.bucket = undefined;
      void old.stop();
    }
    // Disabled, deleted or moved to another instance: what waits here is recorded, so nothing holds the slot.
    if (!h || !h.enabled) this.parkAll();
    this.pump();
  }

  private settings(): HttpSettings | null {
    const h = this.deps.config();
    return h && h.enabled && h.http && h.http.url.length > 0 ? h.http : null;
  }

  private pump(): void {
    if (this.stopping || this.ready.length === 0) return;
    const s = this.settings();
    if (!s) return; // disabled: items wait (durably) until it is enabled again
    if (!s.async_mode) {
      if (this.inFlight === 0) void this.send(this.ready.shift()!);
      return;
    }
    if (this.inFlight >= MAX_IN_FLIGHT) return;
    if (!this.bucket) {
      this.bucket = new TokenBucket(s.token_rate, s.token_burstiness);
      this.bucket.onTokens = () => this.pump();
    }
    const n = this.bucket.takeNow(Math.min(this.ready.length, MAX_IN_FLIGHT - this.inFlight));
    for (let i = 0; i < n; i++) void this.send(this.ready.shift()!);
    if (this.ready.length > 0 && this.inFlight < MAX_IN_FLIGHT) this.bucket.fetch(); // tokens, not slots, are short
  }

  private async send(item: Item): Promise<void> {
    this.inFlight++;
    const s = this.settings();
    const started = new Date();
    item.attempts++;
    item.firstAttemptAt ??= started;
    item.nextAttemptAt = null;
    let last: PostResult = { ok: false, status: null, reason: 'handler has no URL', retryAfterMs: null, durationMs: 0 };
    if (s) {
      item.body ??= requestBody(item.event, s.event_names);
      const urls = s.url;
      while (item.urlsDone < urls.length) {
        const url = urls[item.urlsDone]!;
        last = await this.client.post(url, item.body, s);
        this.logAttempt(item, url, last);
        this.deps.observe?.(item, { ...last, url });
        if (!last.ok) break;
        item.urlsDone++;
      }
    }
    this.inFlight--;
    if (last.ok || (s && item.urlsDone >= s.url.length)) {
      this.finish(item, { state: 'DELIVERED', httpStatus: last.status, at: new Date() });
    } else if (!s || item.attempts >= s.max_attempts || (!last.ok && last.permanent)) {
      this.finish(item, { state: 'FAILED', httpStatus: last.status, error: errorText(last), at: new Date() });
    } else {
      this.retry(item, s, last);
    }
    if (this.inFlight === 0) for (const f of this.drained.splice(0)) f();
    this.pump();
  }

  private logAttempt(item: Item, url: string, r: PostResult): void {
    const line: AttemptLine = {
      instance: this.deps.instance, handler: this.name, i_event: item.event.i_event, event_type: item.event.event_type,
      i_account: item.iAccount, url: redactUrl(url), attempt: item.attempts, status: r.status,
      error: r.ok ? null : r.reason, duration_ms: r.durationMs,
    };
    this.deps.plog.attempt(line);
  }

  /** Delivered or failed for good: record it and let the key's next event go. */
  private finish(item: Item, outcome: Outcome): void {
    this.record(item, outcome);
    this.held.delete(item.event.i_event);
    const q = this.keys.get(item.orderKey);
    q?.shift();
    if (q && q.length > 0) this.makeReady(q[0]!);
    else this.keys.delete(item.orderKey);
  }

  private retry(item: Item, s: HttpSettings, r: PostResult): void {
    const delay = retryDelayMs(item.attempts, s.retry_delay, s.retry_max_delay, r.ok ? null : r.retryAfterMs);
    item.nextAttemptAt = new Date(Date.now() + delay);
    this.record(item, { state: 'RETRY', httpStatus: r.status, error: errorText(r) });
    const q = this.keys.get(item.orderKey) ?? [];
    for (const behind of q.slice(1)) this.park(behind);
    this.makeReady(item);
  }

  private record(item: Item, outcome: Outcome): void {
    this.deps.outcome?.(item, outcome.state);
    this.deps.record(item, outcome);
  }

  /** Make a waiting item durable (PENDING) so that a restart resumes it and it no longer holds the slot. */
  private park(item: Item): void {
    if (item.persisted) return;
    this.record(item, { state: 'PENDING' });
  }

  private parkAll(): void {
    for (const q of this.keys.values()) for (const item of q) this.park(item);
  }

  /**
   * Stops taking items; waits up to `maxWaitMs` for requests on the wire; then
   * records everything still waiting as PENDING so a restart resumes it.
   */
  async stop(maxWaitMs: number): Promise<void> {
    this.stopping = true;
    if (this.inFlight > 0) {
      await Promise.race([
        new Promise<void>((r) => this.drained.push(r)),
        new Promise<void>((r) => setTimeout(r, maxWaitMs).unref()),
      ]);
    }
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    for (const q of this.keys.values()) for (const item of q) this.park(item);
    await this.bucket?.stop();
    await this.client.close();
  }
}

function errorText(r: PostResult): string {
  return r.ok ? '' : r.reason;
}
