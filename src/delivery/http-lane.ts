import type { HandlerConfig, HttpSettings } from '../config/snapshot.ts';
import type { Logger, ProvisioningLog } from '../log/logger.ts';
import { Attempter, type Poster } from './attempter.ts';
import { DurableBatches } from './durability.ts';
import type { PostResult } from './http-client.ts';
import type { Item } from './item.ts';
import { deliveryOf, KeyedQueue, type Delivery } from './keyed-queue.ts';
import type { DeliveryObserver } from './observer.ts';
import { decide } from './outcome-policy.ts';
import type { DeliveryState, Outcome } from './results-writer.ts';
import type { TargetEvent, TargetState } from './targets.ts';
import { describeProblem, StepPlan, type StepProblem } from './steps/plan.ts';
import type { SpillWindow } from './window.ts';

export interface HttpLaneDeps {
  readonly instance: string;
  /** The record stage: every state a delivery reaches goes here; resolves when it is committed. */
  readonly record: (item: Item, outcome: Outcome) => Promise<void>;
  readonly plog: ProvisioningLog;
  readonly log: Logger;
  /** The lane's current configuration (live): the handler's, with the settings of the lane's environment as `http`. */
  readonly config: () => HandlerConfig | undefined;
  readonly observer: DeliveryObserver;
  /** The handler's memory window, owned by the waiting deliveries (src/pipeline/waiting.ts). */
  readonly window: SpillWindow;
  /** A target URL went up or down, or was probed. */
  readonly target?: (state: TargetState, event: TargetEvent) => void;
  /** The requests (a test gives its own; default src/delivery/http-client.ts). */
  readonly client?: Poster;
  /** The environment of the lane (espf.http_handler_envs), for log lines; null or absent: the default row. */
  readonly iEnv?: number | null;
  /** The lane holds no delivery of `key` any more (src/delivery/lane-gate.ts waits for it). */
  readonly drained?: (key: string) => void;
}

/** The record of a delivery fresh from the stream that goes to the database only: never attempted. */
const SPILLED: Outcome = { state: 'PENDING', attempts: 0, urlsDone: 0, firstAttemptAt: null, nextAttemptAt: null };

/**
 * The deliveries of one http handler that go with one set of settings: its
 * default row, or one environment's (src/delivery/http-handler.ts makes one
 * lane per environment with a row of espf.http_handler_envs, so that each has
 * its own token bucket and circuit breakers). Wired from parts with one job each:
 * the keyed queue (src/delivery/keyed-queue.ts: per-account order,
 * coalescing, retry timers), the attempter (src/delivery/attempter.ts: token
 * bucket, circuit breakers, the requests of one attempt), the outcome policy
 * (src/delivery/outcome-policy.ts) and the memory window
 * (src/delivery/window.ts, owned by the waiting deliveries). What is left
 * here: what waits long is made durable (parked: recorded PENDING, or RETRY
 * behind a probe) so the slot moves on, the one probe of a down target, and
 * the graceful stop. The handler's lane gate (src/delivery/lane-gate.ts) has
 * the lane hold a delivery another lane's deliveries of its account go before
 * (`hold`: counted and made durable, `admit` later), and hears when the lane
 * holds no delivery of an account any more (`drained`). It reports outcomes to the record stage and knows
 * nothing of WAL positions.
 *
 * Long outages (docs/operations.md, "A receiver is down"): a target that
 * keeps failing is only probed; attempts refused by a down target do not
 * count towards max_attempts. Memory is bounded by the window: past it,
 * deliveries wait in the database only and come back page by page.
 */
export class HttpLane {
  readonly name: string;
  private readonly queue: KeyedQueue;
  private readonly attempter: Attempter;
  /** The memory window it was given (owned by the waiting deliveries). */
  readonly window: SpillWindow;
  private readonly observer: DeliveryObserver;
  private readonly records = new DurableBatches();
  /** The delivery of the last probe that failed: the next probe. */
  private probeEntry: Delivery | null = null;
  private wake?: NodeJS.Timeout;
  private stopping = false;
  private drained: (() => void)[] = [];
  /** Request steps compiled for the rows in force (`key`: those rows as JSON); null: none, the EventSender body. */
  private steps: { readonly key: string; readonly plan: StepPlan } | null = null;

  constructor(name: string, private readonly deps: HttpLaneDeps) {
    this.name = name;
    this.window = deps.window;
    this.observer = deps.observer;
    this.queue = new KeyedQueue({ ready: () => this.pump(), superseded: (d) => this.superseded(d), drained: deps.drained });
    this.attempter = new Attempter(name, deps.config()?.http?.ca_file ?? null, {
      instance: deps.instance, plog: deps.plog, log: deps.log, observer: deps.observer, client: deps.client, iEnv: deps.iEnv,
      tokens: () => this.pump(),
      checkpoint: (d) => this.record(d, 'PENDING', null, null, null, true),
      target: (state, event) => {
        if (event === 'down') this.parkAll(); // waiting may be long: make everything durable so the slot moves on
        deps.target?.(state, event);
        this.publishTargets();
        if (event === 'up') this.pump();
      },
    });
    this.compileSteps();
    this.observer.held(name, 0);
    this.observer.inFlight(name, 0);
    this.observer.oldestWaiting(name, () => this.queue.oldestSince());
    this.publishTargets();
  }

  /** Items held in memory (queued, in flight or waiting for a retry). */
  get size(): number { return this.queue.size; }
  /** The state of each target URL of the handler (as configured now). */
  get targetStates(): TargetState[] { return this.attempter.targetStates(this.deps.config()?.http?.url); }

  /** A delivery fresh from the stream: into memory, or past the window to the database only (PENDING). */
  enqueue(item: Item): void {
    if (this.spilled(item)) return;
    this.add(deliveryOf(item));
  }

  /** The delivery of this event is held here. */
  holds(iEvent: number): boolean { return this.queue.holds(iEvent); }

  /** Some delivery of `key` (an order key) is held here: queued, on the wire or waiting for its retry. */
  holdsKey(key: string): boolean { return this.queue.holdsKey(key); }

  /**
   * A delivery that must not go into this lane yet (src/delivery/lane-gate.ts:
   * another lane holds its key): counted in the memory window and made
   * durable (PENDING; one read back from the database has its row), so the
   * slot moves on. Null when the window sent it to the database only.
   */
  hold(item: Item): Delivery | null {
    if (!item.resumed && this.spilled(item)) return null;
    const d = deliveryOf(item);
    this.window.entered();
    this.park(d);
    return d;
  }

  /** A delivery `hold` kept: into the queue now (it is counted in the window already). */
  admit(d: Delivery): void {
    this.add(d, false);
  }

  /** A delivery `hold` kept, superseded by a newer one of its type and key (coalescing): recorded SUPERSEDED, never sent. */
  supersede(d: Delivery): void {
    this.superseded(d);
  }

  /** A newer delivery of `type` and order key `key` waits at the gate (coalescing): those of that type waiting here are superseded. */
  supersedeWaiting(key: string, type: string): void {
    this.queue.supersedeWaiting(key, type);
    this.observer.held(this.name, this.queue.size);
  }

  /** Past the window, a delivery fresh from the stream goes to the database only (PENDING): true when it did. */
  private spilled(item: Item): boolean {
    if (!this.window.mustSpill(item.orderKey)) return false;
    this.observer.outcome(item, 'PENDING');
    this.window.spill(item.orderKey, this.deps.record(item, SPILLED));
    return true;
  }

  /** A delivery that waits in the database (a page, a requeued one); false when it is here already. */
  enqueueWaiting(item: Item): boolean {
    if (this.queue.holds(item.event.i_event)) return false;
    this.add(deliveryOf(item));
    return true;
  }

  /** At start: a target URL (as espf.target_states shows it, credentials hidden) the last run saw down. */
  restoreDown(shownUrl: string, since: Date, probes: number): void {
    const s = this.deps.config()?.http;
    if (!s) return;
    this.attempter.restoreDown(shownUrl, s, since, probes);
    this.publishTargets();
  }

  /** Why the handler's request steps cannot be used (an expression does not compile): its deliveries wait; empty when none. */
  get stepProblems(): readonly StepProblem[] { return this.steps?.plan.problems ?? []; }

  /** The request steps compiled once per change of their rows, never per event. */
  private compileSteps(): void {
    const rows = this.deps.config()?.steps;
    if (!rows || rows.length === 0) { this.steps = null; return; }
    const key = JSON.stringify(rows);
    if (this.steps?.key === key) return;
    const plan = StepPlan.compile(rows);
    this.steps = { key, plan };
    for (const p of plan.problems) {
      this.deps.log.error({ handler: this.name, event_type: p.eventType, step: p.step, field: p.field }, `request steps do not compile, the handler's deliveries wait: ${describeProblem(p)}`);
    }
  }

  /** Configuration changed (enabled again, new rate, other URLs): resume. */
  reconfigure(): void {
    const h = this.deps.config();
    this.attempter.reconfigure(h?.http ?? undefined);
    this.compileSteps();
    // Disabled, deleted, moved to another instance, or steps that do not compile: what waits here is recorded, so nothing holds the slot.
    if (!h || !h.enabled || this.stepProblems.length > 0) this.parkAll();
    this.publishTargets();
    this.pump();
  }

  private add(d: Delivery, enters = true): void {
    if (enters) this.window.entered();
    const place = this.queue.add(d, this.deps.config()?.coalesce?.has(d.item.event.event_type) ?? false);
    // Behind a failing event, a target that is down or steps that do not compile, it may wait long: make it durable now so the slot moves on.
    if (place === 'behind-retry' || this.attempter.anyDown || this.stepProblems.length > 0) this.park(d);
    this.observer.held(this.name, this.queue.size);
    if (place === 'head') this.pump();
  }

  private superseded(d: Delivery): void {
    const durable = this.record(d, 'SUPERSEDED', null, null, null);
    this.window.finished(d.item.event.i_event, durable);
  }

  private settings(): HttpSettings | null {
    const h = this.deps.config();
    // Steps that do not compile: nothing is sent (as for a disabled handler), nothing is lost.
    return h && h.enabled && h.http && h.http.url.length > 0 && this.stepProblems.length === 0 ? h.http : null;
  }

  private pump(): void {
    if (this.stopping || (this.queue.readyCount === 0 && !this.probeEntry)) return;
    const s = this.settings();
    if (!s) return; // disabled: items wait (durably) until it is enabled again
    const probeWait = this.attempter.probeWaitMs(s.url);
    if (probeWait !== null) {
      this.probe(probeWait);
      return;
    }
    if (this.probeEntry) { // the target came back while the last probe waited: it goes first
      this.queue.requeue(this.probeEntry);
      this.probeEntry = null;
    }
    const n = this.attempter.slots(this.queue.readyCount, s);
    for (let i = 0; i < n; i++) {
      // A delivery that finishes at once (skipped: no request steps for its type) pumps again, and
      // may let the lane gate admit another: that inner pump may have taken what was ready here.
      const d = this.queue.next();
      if (!d) break;
      void this.send(d, false);
    }
  }

  /** A target is down: one probe at a time (the oldest waiting delivery), when its interval has passed. */
  private probe(waitMs: number): void {
    if (this.attempter.probing) return;
    if (waitMs > 0) {
      if (Number.isFinite(waitMs)) this.wakeIn(waitMs);
      return;
    }
    const d = this.probeEntry ?? this.queue.next();
    if (!d) return;
    this.probeEntry = null;
    void this.send(d, true);
  }

  private wakeIn(ms: number): void {
    clearTimeout(this.wake);
    this.wake = setTimeout(() => { this.wake = undefined; this.pump(); }, Math.min(Math.max(ms, 1), 2 ** 31 - 1));
  }

  private async send(d: Delivery, probe: boolean): Promise<void> {
    const s = this.settings();
    const steps = s && this.steps ? this.steps.plan.stepsFor(d.item.event.event_type) : null;
    if (steps && steps.length === 0) {
      // The handler has steps, none for this type (nor '*'): recorded, not sent.
      this.finish(d, 'SKIPPED', { ok: false, status: null, reason: `no request steps for ${d.item.event.event_type}: skipped`, retryAfterMs: null, durationMs: 0 });
      this.pump();
      return;
    }
    const o = await this.attempter.attempt(d, s, probe, steps);
    const v = decide(o, s, d.attempts);
    const r = o.last;
    if (v.kind === 'delivered') {
      this.finish(d, 'DELIVERED', r);
    } else if (v.kind === 'failed') {
      this.finish(d, 'FAILED', r);
    } else if (v.kind === 'parked') {
      this.waitForTarget(d, s!, r, probe);
    } else {
      this.retry(d, v.delayMs, r);
    }
    if (this.attempter.inFlight === 0) for (const f of this.drained.splice(0)) f();
    this.pump();
  }

  /** Delivered, failed for good or skipped: record it and let the key's next event go. */
  private finish(d: Delivery, state: 'DELIVERED' | 'FAILED' | 'SKIPPED', r: PostResult): void {
    const durable = this.record(d, state, null, r.status, state !== 'DELIVERED' ? errorText(r) : null);
    this.queue.done(d);
    this.window.finished(d.item.event.i_event, durable);
    this.observer.held(this.name, this.queue.size);
  }

  /** Another attempt after `delayMs`; the events behind it are parked meanwhile. */
  private retry(d: Delivery, delayMs: number, r: PostResult): void {
    const at = new Date(Date.now() + delayMs);
    this.record(d, 'RETRY', at, r.status, errorText(r));
    for (const behind of this.queue.behind(d)) this.park(behind);
    this.queue.retryAt(d, at);
  }

  /**
   * The attempt met a target that is down: it does not count towards
   * max_attempts. The delivery is recorded RETRY (with the error, and the next
   * probe as its next attempt) and waits; a failed probe stays the next probe.
   */
  private waitForTarget(d: Delivery, s: HttpSettings, r: PostResult, wasProbe: boolean): void {
    const wait = this.attempter.probeWaitMs(s.url);
    this.record(d, 'RETRY', wait !== null && Number.isFinite(wait) ? new Date(Date.now() + wait) : null, r.status, errorText(r));
    if (wasProbe && !this.probeEntry) this.probeEntry = d;
    else this.queue.requeue(d);
  }

  private record(d: Delivery, state: DeliveryState, nextAttemptAt: Date | null, httpStatus: number | null, error: string | null,
                 intermediate = false): Promise<void> {
    const { item } = d;
    if (!intermediate) this.observer.outcome(item, state);
    const durable = this.deps.record(item, {
      state, attempts: d.attempts, urlsDone: d.urlsDone, firstAttemptAt: d.firstAttemptAt, nextAttemptAt, httpStatus, error,
      stepsDone: d.stepsDone, stepAnswers: d.stepAnswers, intermediate,
    });
    // Once a record of it has committed, a row holds it (a newer record only changes the row).
    if (!d.record?.done) d.record = this.records.of(durable);
    return durable;
  }

  /** Make a waiting delivery durable (PENDING) so that a restart resumes it and it no longer holds the slot. */
  private park(d: Delivery): void {
    if (d.record?.done) return;
    this.record(d, 'PENDING', null, null, null);
  }

  private parkAll(): void {
    for (const d of this.queue.entries()) this.park(d);
  }

  private publishTargets(): void {
    this.observer.targets(this.name, this.targetStates);
  }

  /**
   * Stops taking items; waits up to `maxWaitMs` for requests on the wire; then
   * records everything still waiting as PENDING so a restart resumes it.
   */
  async stop(maxWaitMs: number): Promise<void> {
    this.stopping = true;
    if (this.attempter.inFlight > 0) {
      await Promise.race([
        new Promise<void>((r) => this.drained.push(r)),
        new Promise<void>((r) => setTimeout(r, maxWaitMs).unref()),
      ]);
    }
    this.queue.stop();
    clearTimeout(this.wake);
    this.parkAll();
    await this.attempter.close();
  }
}

function errorText(r: PostResult): string {
  return r.ok ? '' : r.reason;
}
