import type { HandlerConfig } from '../config/snapshot.ts';
import type { StreamEvent } from '../stream/replication.ts';
import { HttpLane, type HttpLaneDeps } from './http-lane.ts';
import type { Item } from './item.ts';
import { LaneGate } from './lane-gate.ts';
import type { DeliveryObserver } from './observer.ts';
import type { StepProblem } from './steps/plan.ts';
import type { TargetEvent, TargetState } from './targets.ts';
import type { SpillWindow } from './window.ts';

export interface HttpHandlerDeps extends Omit<HttpLaneDeps, 'target'> {
  /** A target URL went up or down, or was probed (`state.iEnv`: its environment, null for the default row). */
  readonly target?: (h: HttpHandler, state: TargetState, event: TargetEvent) => void;
}

/** The lane of the default row; an environment's lane is keyed by its i_env. */
type LaneKey = number | null;

/** The environment of an event (variables.i_env), when it is a whole number. */
export function envOf(e: StreamEvent): number | null {
  const v = e.variables.i_env;
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d{1,9}$/.test(v) ? Number(v) : NaN;
  return Number.isInteger(n) ? n : null;
}

/**
 * ③ One http handler: its deliveries split into lanes by environment
 * (docs/handlers.md, "Settings per environment"). An event whose i_env has a
 * row of espf.http_handler_envs goes to that environment's lane, delivered
 * with the merged settings; every other event to the lane of the default row.
 * Each lane (src/delivery/http-lane.ts) has its own keyed queue, token bucket
 * and circuit breakers: an environment whose receiver is down, or whose bucket
 * is empty, does not hold up another's deliveries. The lanes share the
 * handler's memory window; what they publish is summed up here under the
 * handler's name (targets with their i_env).
 *
 * Per-account order holds across the lanes. An account's events share its
 * i_env; when its i_env changes, or an override row of its environment is
 * added or removed, while earlier deliveries of it are still held in another
 * lane, its later deliveries wait at the gate (src/delivery/lane-gate.ts,
 * durable, counted in the window) until that lane holds none of the account
 * any more; then they go to their own lane, with its settings. With one lane
 * (no environment rows) nothing is looked up: the gate is passed by.
 */
export class HttpHandler {
  readonly name: string;
  readonly window: SpillWindow;
  private readonly lanes = new Map<LaneKey, HttpLane>();
  private readonly held = new Map<LaneKey, number>();
  private readonly onWire = new Map<LaneKey, number>();
  private readonly oldest = new Map<LaneKey, () => Date | null>();
  private readonly targets = new Map<LaneKey, readonly TargetState[]>();
  /** An environment's configuration, made once per configuration in force. */
  private readonly configs = new Map<number, { readonly from: HandlerConfig; readonly config: HandlerConfig }>();
  /** Deliveries whose account another lane still holds (only used with more than one lane). */
  private readonly gate: LaneGate<LaneKey>;

  constructor(name: string, private readonly deps: HttpHandlerDeps) {
    this.name = name;
    this.window = deps.window;
    this.gate = new LaneGate(this.lanes, (type) => deps.config()?.coalesce?.has(type) ?? false);
    deps.observer.oldestWaiting(name, () => {
      let min: Date | null = null;
      for (const read of this.oldest.values()) {
        const d = read();
        if (d && (!min || d < min)) min = d;
      }
      return min;
    });
    this.lane(null);
    for (const env of deps.config()?.envs?.keys() ?? []) this.lane(env);
  }

  /** Items held in memory (queued, in flight or waiting for a retry), in every lane and at the gate. */
  get size(): number {
    let n = this.gate.size;
    for (const l of this.lanes.values()) n += l.size;
    return n;
  }

  /** The state of each target URL: the default row's, then each environment's (as configured now), with its i_env. */
  get targetStates(): TargetState[] {
    const live = this.liveKeys();
    return [...this.lanes].filter(([k]) => live.has(k)).flatMap(([k, l]) => l.targetStates.map((s) => ({ ...s, iEnv: k })));
  }

  /** Why the handler's request steps cannot be used (the same for every lane); empty when none. */
  get stepProblems(): readonly StepProblem[] { return this.lane(null).stepProblems; }

  /** A delivery fresh from the stream, to the lane of its environment (through the gate when there are several). */
  enqueue(item: Item): void {
    const to = this.laneKeyOf(item);
    const lane = this.lane(to);
    if (this.lanes.size > 1 && this.gate.take(item, to)) {
      this.publishHeld();
      return;
    }
    lane.enqueue(item);
  }

  /** A delivery that waits in the database (a page, a requeued one); false when a lane or the gate holds it already. */
  enqueueWaiting(item: Item): boolean {
    for (const l of this.lanes.values()) if (l.holds(item.event.i_event)) return false;
    const to = this.laneKeyOf(item);
    const lane = this.lane(to);
    if (this.lanes.size > 1) {
      if (this.gate.holds(item.event.i_event)) return false;
      if (this.gate.take(item, to)) {
        this.publishHeld();
        return true;
      }
    }
    return lane.enqueueWaiting(item);
  }

  /** At start: a target URL of environment `iEnv` (null: the default row) the last run saw down. */
  restoreDown(shownUrl: string, iEnv: number | null, since: Date, probes: number): void {
    if (iEnv !== null && !this.deps.config()?.envs?.has(iEnv)) return; // its override is gone
    this.lane(iEnv).restoreDown(shownUrl, since, probes);
  }

  /** Configuration changed: lanes for new environments, new settings for all. */
  reconfigure(): void {
    for (const env of this.deps.config()?.envs?.keys() ?? []) this.lane(env);
    for (const l of this.lanes.values()) l.reconfigure();
    this.publishTargets();
  }

  /** Stops every lane (requests on the wire finish within `maxWaitMs`; what waits is recorded, at the gate it is already). */
  async stop(maxWaitMs: number): Promise<void> {
    this.gate.stop();
    await Promise.all([...this.lanes.values()].map((l) => l.stop(maxWaitMs)));
  }

  /** The lane of an item's environment, by the configuration in force (at its commit position, for one fresh from the stream). */
  private laneKeyOf(item: Item): LaneKey {
    const env = envOf(item.event);
    return env !== null && this.deps.config()?.envs?.has(env) ? env : null;
  }

  /** The lanes whose settings are in force: the default row's and those of the environments with a row now. */
  private liveKeys(): Set<LaneKey> {
    return new Set<LaneKey>([null, ...(this.deps.config()?.envs?.keys() ?? [])]);
  }

  private lane(key: LaneKey): HttpLane {
    let l = this.lanes.get(key);
    if (l) return l;
    const d = this.deps;
    l = new HttpLane(this.name, {
      ...d,
      observer: this.laneObserver(key),
      config: key === null ? d.config : () => this.envConfig(key),
      target: (state, event) => d.target?.(this, { ...state, iEnv: key }, event),
      iEnv: key,
      drained: (orderKey) => this.gate.drained(orderKey),
    });
    this.lanes.set(key, l);
    return l;
  }

  /** The handler's configuration with environment `env`'s settings (the default row's once its override is gone). */
  private envConfig(env: number): HandlerConfig | undefined {
    const h = this.deps.config();
    const s = h?.envs?.get(env);
    if (!h || !s) return h;
    const cached = this.configs.get(env);
    if (cached?.from === h) return cached.config;
    const config: HandlerConfig = { ...h, http: s };
    this.configs.set(env, { from: h, config });
    return config;
  }

  /** What a lane publishes, summed up over the lanes under the handler's name. */
  private laneObserver(key: LaneKey): DeliveryObserver {
    const o = this.deps.observer;
    return {
      ...o,
      held: (_h, n) => { this.held.set(key, n); this.publishHeld(); },
      inFlight: (_h, n) => { this.onWire.set(key, n); o.inFlight(this.name, sum(this.onWire)); },
      oldestWaiting: (_h, read) => { this.oldest.set(key, read); },
      targets: (_h, states) => { this.targets.set(key, states); this.publishTargets(); },
    };
  }

  /** Deliveries held in memory: in the lanes and at the gate. */
  private publishHeld(): void {
    this.deps.observer.held(this.name, sum(this.held) + this.gate.size);
  }

  private publishTargets(): void {
    const live = this.liveKeys();
    this.deps.observer.targets(this.name, [...this.targets].filter(([k]) => live.has(k)).flatMap(([k, states]) => states.map((s) => ({ ...s, iEnv: k }))));
  }
}

function sum(m: Map<LaneKey, number>): number {
  let n = 0;
  for (const v of m.values()) n += v;
  return n;
}
