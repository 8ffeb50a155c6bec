import type { HandlerConfig, HttpSettings } from '../config/snapshot.ts';
import type { AttemptLine, Logger, ProvisioningLog } from '../log/logger.ts';
import { MAX_TIMER_MS, retryDelayMs } from '../backoff.ts';
import { HttpClient, requestBody, type PostResult } from './http-client.ts';
import type { Item } from './item.ts';
import type { Outcome } from './results-writer.ts';
import { Fifo } from './fifo.ts';
import { redactUrl } from '../security/redact.ts';
import { Targets, type TargetEvent, type TargetState } from './targets.ts';
import { TokenBucket } from './token-bucket.ts';
import { SpillWindow, type SpillMark } from './window.ts';

const MAX_IN_FLIGHT = 256;    // requests of one handler on the wire at once (undici pools 128 connections per origin)
/** Deliveries of one handler held in memory at most, by default: above the 10,000 not yet durable that hold the stream back, so a fast receiver never meets the window. */
export const DEFAULT_WINDOW = 12_000;

export interface HttpHandlerDeps {
  readonly instance: string;
  /** The record stage: every outcome (DELIVERED, FAILED, RETRY, PENDING) goes here. */
  readonly record: (item: Item, outcome: Outcome) => void;
  readonly plog: ProvisioningLog;
  readonly log: Logger;
  /** The handler's current configuration (live). */
  readonly config: () => HandlerConfig | undefined;
  readonly observe?: (item: Item, attempt: PostResult, url: string) => void;
  readonly outcome?: (item: Item, state: Outcome['state']) => void;
  /** Deliveries held in memory at most (default DEFAULT_WINDOW); the others wait in espf.event_deliveries only. */
  readonly window?: number;
  /** Some deliveries wait in the database only and there is room for a page of them. */
  readonly wantWaiting?: (h: HttpHandler) => void;
  /** A target URL went up or down, or was probed. */
  readonly target?: (h: HttpHandler, state: TargetState, event: TargetEvent) => void;
}

/**
 * The deliver stage of one http handler. Events of one key (account) form
 * a queue whose head alone is sent; different keys proceed in parallel, as
 * fast as the token bucket allows (async) or one request at a time (sync).
 * A failed head waits for its retry in espf.event_deliveries (RETRY), and the
 * events behind it are recorded as PENDING, so the slot can move on.
 * It reports outcomes to the record stage and knows nothing of WAL positions.
 *
 * Long outages (docs/operations.md, "A receiver is down"): a circuit breaker
 * per target URL (src/delivery/targets.ts) stops regular requests to a target
 * that keeps failing and sends one probe at a time instead; attempts refused by
 * a down target do not count towards max_attempts. Memory is bounded by a
 * window (src/delivery/window.ts): past it, deliveries wait in the database
 * only and come back page by page. Deliveries from the database and fresh ones
 * from the stream take turns, so neither starves the other.
 */
export class HttpHandler {
  readonly name: string;
  private readonly keys = new Map<string, Item[]>();
  private readonly held = new Set<number>();     // i_event of every item in `keys`
  private readonly ready = new Fifo<Item>();           // fresh from the stream
  private readonly readyWaiting = new Fifo<Item>();    // from the database (pages, requeued)
  private readonly fromDatabase = new WeakSet<Item>();
  private readyTurn = false;
  private readonly timers = new Map<Item, NodeJS.Timeout>();
  private readonly retrying = new Set<string>();
  private readonly client: HttpClient;
  private readonly targets: Targets;
  private readonly window: SpillWindow;
  private bucket?: TokenBucket;
  private inFlight = 0;
  private count = 0;
  private probing = false;
  private probeItem: Item | null = null;
  private wake?: NodeJS.Timeout;
  private stopping = false;
  private drained: (() => void)[] = [];

  constructor(name: string, private readonly deps: HttpHandlerDeps) {
    this.name = name;
    this.client = new HttpClient(deps.config()?.http?.ca_file ?? null);
    this.window = new SpillWindow(deps.window ?? DEFAULT_WINDOW);
    this.targets = new Targets(name, deps.log, (state, event) => {
      if (event === 'down') this.parkAll(); // waiting may be long: make everything durable so the slot moves on
      deps.target?.(this, state, event);
      if (event === 'up') this.pump();
    });
  }

  /** Items held in memory (queued, in flight or waiting for a retry). */
  get size(): number { return this.count; }
  /** The state of each target URL of the handler (as configured now). */
  get targetStates(): TargetState[] { return this.targets.states(this.deps.config()?.http?.url); }
  /** Some deliveries wait in the database only (past the memory window). */
  get spilled(): boolean { return this.window.spilled; }
  /** How many deliveries from the database may come into memory now. */
  get room(): number { return this.window.room(this.count); }
  get windowSize(): number { return this.window.size; }
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

  /** A delivery fresh from the stream: into memory, or past the window to the database only (PENDING). */
  enqueue(item: Item): void {
    if (this.window.mustSpill(item.orderKey, this.count)) {
      this.window.spill(item);
      this.record(item, { state: 'PENDING' });
      return;
    }
    this.add(item);
  }

  /** A delivery that waits in the database (a page, a requeued one); false when it is here already. */
  enqueueWaiting(item: Item): boolean {
    const i = item.event.i_event;
    if (this.held.has(i) || this.window.recentlyFinished(i)) return false;
    this.fromDatabase.add(item);
    this.add(item);
    return true;
  }

  /** At start: a target URL (as espf.target_states shows it, credentials hidden) the last run saw down. */
  restoreDown(shownUrl: string, since: Date, probes: number): void {
    const s = this.deps.config()?.http;
    const url = s?.url.find((u) => redactUrl(u) === shownUrl);
    if (s && url) this.targets.restoreDown(url, s, since, probes);
  }

  /** At start: deliveries may wait in the database for any account; pages bring them in. */
  startSpilled(): void { this.window.startSpilled(); }
  /** The pages passed every delivery that waited at start. */
  pastStartHorizon(): void { this.window.pastStartHorizon(); }
  /** Before a page is read. */
  beginPage(): SpillMark {
    this.window.beginPage();
    return this.window.mark();
  }
  /** The page read since beginPage() is in memory (or failed). */
  endPage(): void { this.window.endPage(); }
  /** A page came back short: memory may hold every waiting delivery again. */
  caughtUp(mark: SpillMark): boolean { return this.window.caughtUp(mark); }

  private add(item: Item): void {
    this.held.add(item.event.i_event);
    this.count++;
    let q = this.keys.get(item.orderKey);
    if (q && this.deps.config()?.coalesce?.has(item.event.event_type)) q = this.supersedeOlder(q, item);
    if (!q) {
      this.keys.set(item.orderKey, [item]);
      // A target is down: it may wait long; make it durable now so the slot moves on.
      if (this.targets.anyDown) this.park(item);
      this.makeReady(item);
      return;
    }
    q.push(item);
    // Behind a failing event, or a target that is down, it may wait long: make it durable now.
    if (this.retrying.has(item.orderKey) || this.targets.anyDown) this.park(item);
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
    item.persisted = false; // until this final outcome commits
    this.window.finished(item);
    this.held.delete(item.event.i_event);
    this.count--;
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
        this.pushReady(item);
        this.pump();
      }, Math.min(wait, MAX_TIMER_MS)));
      return;
    }
    this.pushReady(item);
    this.pump();
  }

  private pushReady(item: Item): void {
    (this.fromDatabase.has(item) ? this.readyWaiting : this.ready).push(item);
  }

  private get readyCount(): number { return this.ready.length + this.readyWaiting.length; }

  /** The next ready item: fresh and waiting ones take turns. */
  private nextReady(): Item | undefined {
    this.readyTurn = !this.readyTurn;
    const [a, b] = this.readyTurn ? [this.ready, this.readyWaiting] : [this.readyWaiting, this.ready];
    return a.shift() ?? b.shift();
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
    if (this.stopping || (this.readyCount === 0 && !this.probeItem)) return;
    const s = this.settings();
    if (!s) return; // disabled: items wait (durably) until it is enabled again
    const probeWait = this.targets.probeWaitMs(s.url);
    if (probeWait !== null) {
      this.probe(probeWait);
      return;
    }
    if (this.probeItem) { // the target came back while the last probe waited: it goes first
      this.pushReady(this.probeItem);
      this.probeItem = null;
    }
    if (!s.async_mode) {
      if (this.inFlight === 0) void this.send(this.nextReady()!);
      return;
    }
    if (this.inFlight >= MAX_IN_FLIGHT) return;
    if (!this.bucket) {
      this.bucket = new TokenBucket(s.token_rate, s.token_burstiness);
      this.bucket.onTokens = () => this.pump();
    }
    const n = this.bucket.takeNow(Math.min(this.readyCount, MAX_IN_FLIGHT - this.inFlight));
    for (let i = 0; i < n; i++) void this.send(this.nextReady()!);
    if (this.readyCount > 0 && this.inFlight < MAX_IN_FLIGHT) this.bucket.fetch(); // tokens, not slots, are short
  }

  /** A target is down: one probe at a time (the oldest waiting delivery), when its interval has passed. */
  private probe(waitMs: number): void {
    if (this.probing) return;
    if (waitMs > 0) {
      if (Number.isFinite(waitMs)) this.wakeIn(waitMs);
      return;
    }
    const item = this.probeItem ?? this.nextReady();
    if (!item) return;
    this.probeItem = null;
    this.probing = true;
    void this.send(item, true);
  }

  private wakeIn(ms: number): void {
    clearTimeout(this.wake);
    this.wake = setTimeout(() => { this.wake = undefined; this.pump(); }, Math.min(Math.max(ms, 1), 2 ** 31 - 1));
  }

  private async send(item: Item, probe = false): Promise<void> {
    this.inFlight++;
    const s = this.settings();
    const started = new Date();
    item.attempts++;
    item.firstAttemptAt ??= started;
    item.nextAttemptAt = null;
    let last: PostResult = { ok: false, status: null, reason: 'handler has no URL', retryAfterMs: null, durationMs: 0 };
    let targetDown = false; // the attempt met a target that is down: it does not count
    if (s) {
      item.body ??= requestBody(item.event, s.event_names);
      const urls = s.url;
      while (item.urlsDone < urls.length) {
        const url = urls[item.urlsDone]!;
        const breaker = this.targets.breaker(url, s);
        const atDown = !breaker.up;
        if (atDown && (!probe || breaker.probing)) {
          // On the wire when the target went down, or a second down target: not sent.
          last = { ok: false, status: null, reason: `${redactUrl(url)} is down (circuit breaker open): waiting for a probe to succeed`, retryAfterMs: null, durationMs: 0 };
          targetDown = true;
          break;
        }
        if (atDown) breaker.startProbe();
        last = await this.client.post(url, item.body, s);
        this.logAttempt(item, url, last);
        this.deps.observe?.(item, last, url);
        this.targets.record(url, last, atDown);
        if (!last.ok) {
          targetDown = atDown && !this.targets.breaker(url, s).up;
          break;
        }
        item.urlsDone++;
      }
    }
    this.inFlight--;
    if (probe) this.probing = false;
    if (last.ok || (s && item.urlsDone >= s.url.length)) {
      this.finish(item, { state: 'DELIVERED', httpStatus: last.status, at: new Date() });
    } else if (s && targetDown) {
      item.attempts--;
      this.waitForTarget(item, s, last, probe);
    } else if (!s || item.attempts >= s.max_attempts || (!last.ok && last.permanent)) {
      this.finish(item, { state: 'FAILED', httpStatus: last.status, error: errorText(last), at: new Date() });
    } else {
      this.retry(item, s, last);
    }
    if (this.inFlight === 0) for (const f of this.drained.splice(0)) f();
    this.pump();
  }

  /**
   * The attempt met a target that is down: it does not count towards
   * max_attempts. The delivery is recorded RETRY (with the error, and the next
   * probe as its next attempt) and waits; a failed probe stays the next probe.
   */
  private waitForTarget(item: Item, s: HttpSettings, r: PostResult, wasProbe: boolean): void {
    const wait = this.targets.probeWaitMs(s.url);
    item.nextAttemptAt = wait !== null && Number.isFinite(wait) ? new Date(Date.now() + wait) : null;
    this.record(item, { state: 'RETRY', httpStatus: r.status, error: errorText(r) });
    item.nextAttemptAt = null;
    if (wasProbe && !this.probeItem) this.probeItem = item;
    else this.pushReady(item);
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
    item.persisted = false; // until this final outcome commits
    this.window.finished(item);
    this.record(item, outcome);
    this.held.delete(item.event.i_event);
    this.count--;
    const q = this.keys.get(item.orderKey);
    q?.shift();
    if (q && q.length > 0) this.makeReady(q[0]!);
    else this.keys.delete(item.orderKey);
    if (this.window.spilled && this.window.room(this.count) >= this.window.size * 0.3) this.deps.wantWaiting?.(this);
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
    clearTimeout(this.wake);
    for (const q of this.keys.values()) for (const item of q) this.park(item);
    await this.bucket?.stop();
    await this.client.close();
  }
}

function errorText(r: PostResult): string {
  return r.ok ? '' : r.reason;
}
