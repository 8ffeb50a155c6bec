import { MAX_TIMER_MS } from '../backoff.ts';
import type { Durable } from './durability.ts';
import { Fifo } from './fifo.ts';
import type { Item } from './item.ts';
import type { StepAnswer } from './steps/render.ts';

/**
 * One item in the memory of an http handler, with its attempt state. Each
 * field has one part that changes it: the attempter (src/delivery/attempter.ts)
 * counts `attempts`, `urlsDone`, `firstAttemptAt` and builds `body`; this queue
 * keeps `nextAttemptAt` and the retry `timer`; the handler
 * (src/delivery/http-handler.ts) keeps `record`, the durability of its latest
 * record.
 */
export interface Delivery {
  readonly item: Item;
  /** Read back from espf.event_deliveries (a page, a requeued row), not fresh from the stream. */
  readonly fromDatabase: boolean;
  attempts: number;
  urlsDone: number;
  firstAttemptAt: Date | null;
  /** The JSON body, built once. */
  body: string | undefined;
  /** Request steps: how many are done, and their answers (src/delivery/steps/run.ts counts them). */
  stepsDone: number;
  stepAnswers: readonly StepAnswer[];
  nextAttemptAt: Date | null;
  timer: NodeJS.Timeout | undefined;
  /** Null until it is first recorded; a row of espf.event_deliveries holds it once `done` (one from the database has one). */
  record: Durable | null;
}

const ROW: Durable = { done: true };

/** A delivery of `item`, its attempt state taken from the row it was read from, if any. */
export function deliveryOf(item: Item): Delivery {
  const r = item.resumed;
  return {
    item, fromDatabase: r !== null,
    attempts: r ? r.attempts : 0, urlsDone: r ? r.urlsDone : 0, firstAttemptAt: r ? r.firstAttemptAt : null,
    body: undefined, stepsDone: r?.stepsDone ?? 0, stepAnswers: r?.stepAnswers ?? [], nextAttemptAt: r ? r.nextAttemptAt : null, timer: undefined, record: r ? ROW : null,
  };
}

/** Where `add` put a delivery: at the head of its key (ready, or waiting for its retry time), or behind others. */
export type Place = 'head' | 'behind' | 'behind-retry';

/**
 * The keyed queue of one http handler: deliveries of one key (the account,
 * src/delivery/item.ts `orderKey`) in commit order, of which the head alone
 * is ready to be sent; different keys proceed in parallel. A head that waits
 * for its retry is ready when its time comes (`ready` is called). Fresh
 * deliveries and those from the database take turns, so neither starves the
 * other. Coalescing (espf.event_types.coalesce): a new delivery supersedes
 * the older ones of its type that wait in its key, not on the wire. When the
 * last delivery of a key is done, `drained` says so (the lane gate of the
 * handler, src/delivery/lane-gate.ts, waits for it).
 */
export class KeyedQueue {
  private readonly keys = new Map<string, Delivery[]>();
  private readonly held = new Set<number>();       // i_event of every delivery in `keys`
  private readonly fresh = new Fifo<Delivery>();
  private readonly waiting = new Fifo<Delivery>();
  private turn = false;
  private readonly retrying = new Set<string>();   // keys whose head waits for its retry time

  constructor(private readonly on: {
    /** A delivery became ready by its retry time, or as the new head of a key whose head was superseded. */
    readonly ready: () => void;
    /** Coalescing took this delivery out of the queue: it is never sent. */
    readonly superseded: (d: Delivery) => void;
    /** The last delivery of `key` left the queue (done: delivered, failed for good, skipped): the queue holds none of the key now. */
    readonly drained?: (key: string) => void;
  }) {}

  /** Deliveries held: queued, on the wire or waiting for their retry. */
  get size(): number { return this.held.size; }
  /** Deliveries ready to be sent. */
  get readyCount(): number { return this.fresh.length + this.waiting.length; }

  /** The event is queued, on the wire or waiting for its retry here. */
  holds(iEvent: number): boolean { return this.held.has(iEvent); }

  /** Some delivery of `key` is queued, on the wire or waiting for its retry here. */
  holdsKey(key: string): boolean { return this.keys.has(key); }

  /** Queues `d` behind its key's earlier deliveries; `coalesce`: its type supersedes the older ones of its type. */
  add(d: Delivery, coalesce: boolean): Place {
    const key = d.item.orderKey;
    this.held.add(d.item.event.i_event);
    let q = this.keys.get(key);
    if (q && coalesce) q = this.supersedeOlder(q, d);
    if (!q) {
      this.keys.set(key, [d]);
      this.makeReady(d);
      return 'head';
    }
    q.push(d);
    return this.retrying.has(key) ? 'behind-retry' : 'behind';
  }

  /** The next ready delivery (its wait, if any, is over): fresh and waiting ones take turns. */
  next(): Delivery | undefined {
    this.turn = !this.turn;
    const d = this.turn ? (this.fresh.shift() ?? this.waiting.shift()) : (this.waiting.shift() ?? this.fresh.shift());
    if (d) d.nextAttemptAt = null;
    return d;
  }

  /** An attempt of `d` was not made after all (its target is down): it is ready again, behind the others. */
  requeue(d: Delivery): void {
    (d.fromDatabase ? this.waiting : this.fresh).push(d);
  }

  /** `d`, the head of its key, waits until `d.nextAttemptAt`, then is ready. */
  retryAt(d: Delivery, at: Date): void {
    d.nextAttemptAt = at;
    this.makeReady(d);
  }

  /** The deliveries behind `d` in its key. */
  behind(d: Delivery): Delivery[] {
    return this.keys.get(d.item.orderKey)?.slice(1) ?? [];
  }

  /** `d`, the head of its key, finished (delivered or failed): the key's next delivery is ready. */
  done(d: Delivery): void {
    this.held.delete(d.item.event.i_event);
    const q = this.keys.get(d.item.orderKey);
    q?.shift();
    if (q && q.length > 0) {
      this.makeReady(q[0]!);
      return;
    }
    this.keys.delete(d.item.orderKey);
    this.on.drained?.(d.item.orderKey);
  }

  /** Every delivery held. */
  *entries(): IterableIterator<Delivery> {
    for (const q of this.keys.values()) yield* q;
  }

  /** The commit time of the oldest delivery at the head of a key, null when none waits. */
  oldestSince(): Date | null {
    let oldest: Date | null = null;
    for (const q of this.keys.values()) {
      const t = q[0]?.item.committedAt;
      if (t && (!oldest || t < oldest)) oldest = t;
    }
    return oldest;
  }

  /** No retry timer fires any more. */
  stop(): void {
    for (const q of this.keys.values()) {
      const t = q[0]?.timer;
      if (t) { clearTimeout(t); q[0]!.timer = undefined; }
    }
  }

  /**
   * A newer delivery of `type` and `key` waits elsewhere (another lane of the
   * handler, src/delivery/lane-gate.ts): the deliveries of that type that wait
   * here, not on the wire, are superseded; `drained` if the key empties.
   */
  supersedeWaiting(key: string, type: string): void {
    const q = this.keys.get(key);
    if (!q || this.supersedeType(key, q, type)) return;
    this.keys.delete(key);
    this.on.drained?.(key);
  }

  /** Returns the queue, or undefined if it emptied. */
  private supersedeOlder(q: Delivery[], d: Delivery): Delivery[] | undefined {
    const key = d.item.orderKey;
    if (this.supersedeType(key, q, d.item.event.event_type)) return q;
    this.keys.delete(key);
    return undefined;
  }

  /** Supersedes the deliveries of `type` in `q`, the queue of `key`, that wait (not on the wire); false when it emptied. */
  private supersedeType(key: string, q: Delivery[], type: string): boolean {
    for (let i = q.length - 1; i >= 1; i--) {
      if (q[i]!.item.event.event_type === type) this.supersede(q.splice(i, 1)[0]!);
    }
    const head = q[0]!;
    if (head.item.event.event_type !== type || !head.timer) return true; // the head is on the wire, or of another type
    clearTimeout(head.timer); // it was waiting for its retry
    head.timer = undefined;
    this.retrying.delete(key);
    q.shift();
    this.supersede(head);
    if (q.length === 0) return false;
    if (this.makeReady(q[0]!)) this.on.ready();
    return true;
  }

  private supersede(d: Delivery): void {
    this.held.delete(d.item.event.i_event);
    this.on.superseded(d);
  }

  /** True when `d` is ready now, false when it waits for its retry time. */
  private makeReady(d: Delivery): boolean {
    const wait = d.nextAttemptAt ? d.nextAttemptAt.getTime() - Date.now() : 0;
    if (wait > 0) {
      this.retrying.add(d.item.orderKey);
      d.timer = setTimeout(() => {
        d.timer = undefined;
        // A wait longer than one timer holds is re-armed until it is over: nothing fires early.
        if (wait > MAX_TIMER_MS) { this.makeReady(d); return; }
        this.retrying.delete(d.item.orderKey);
        this.requeue(d);
        this.on.ready();
      }, Math.min(wait, MAX_TIMER_MS));
      return false;
    }
    this.requeue(d);
    return true;
  }
}
