import type { Item } from './item.ts';
import type { Delivery } from './keyed-queue.ts';

/** What the gate needs of a lane (src/delivery/http-lane.ts). */
export interface GatedLane {
  /** Some delivery of the order key is held in the lane: queued, on the wire or waiting for its retry. */
  holdsKey(key: string): boolean;
  /** Counts the delivery in the memory window and makes it durable; null when the window sent it to the database only. */
  hold(item: Item): Delivery | null;
  /** A delivery `hold` kept: into the lane's keyed queue now. */
  admit(d: Delivery): void;
  /** A delivery `hold` kept, superseded (coalescing): recorded, never sent. */
  supersede(d: Delivery): void;
  /** A newer delivery of `type` and `key` waits at the gate (coalescing): the lane's waiting ones of that type are superseded. */
  supersedeWaiting(key: string, type: string): void;
}

/** A delivery held at the gate, and the lane it goes to (the one of its commit position). */
interface Gated<K> {
  readonly d: Delivery;
  readonly lane: K;
}

/**
 * Per-account order across the lanes of one http handler
 * (src/delivery/http-handler.ts; docs/handlers.md, "Settings per
 * environment"). Each lane keeps the order of an account's deliveries in its
 * own keyed queue; when an account's deliveries go to another lane (its
 * `i_env` changed, or a row of espf.http_handler_envs was added or dropped)
 * while another lane still holds some of them, the later ones wait here, in
 * commit order, until no other lane holds the account's key; then each goes
 * to its own lane. A delivery held here is counted in the handler's memory
 * window and made durable (recorded PENDING) by its lane, so the slot moves
 * on; a page of waiting deliveries (src/pipeline/waiting.ts) passes through
 * the gate as the stream does. Coalescing (docs/dba.md, "Coalescing") reaches
 * across: a delivery held here supersedes the older ones of its type and key
 * held here (none is on the wire) and those waiting in the other lanes.
 */
export class LaneGate<K> {
  /** Per order key, the deliveries held, in commit order. */
  private readonly keys = new Map<string, Gated<K>[]>();
  /** i_event of every delivery held. */
  private readonly events = new Set<number>();
  private stopped = false;

  constructor(
    private readonly lanes: ReadonlyMap<K, GatedLane>,
    /** Events of this type supersede the older ones of their type and key (espf.event_types.coalesce). */
    private readonly coalesce: (eventType: string) => boolean,
  ) {}

  /** Deliveries held at the gate (in memory). */
  get size(): number { return this.events.size; }

  /** The delivery of this event is held at the gate. */
  holds(iEvent: number): boolean { return this.events.has(iEvent); }

  /**
   * `item` is to go to lane `to`. False: nothing holds its key elsewhere, it
   * goes to `to` now (the caller puts it there). True: the gate took it (held
   * behind another lane's deliveries of its key, or sent to the database only
   * by the window: a page brings it back through here).
   */
  take(item: Item, to: K): boolean {
    const key = item.orderKey;
    let q = this.keys.get(key);
    if (!q && !this.heldElsewhere(key, to)) return false;
    const d = this.lanes.get(to)!.hold(item);
    if (!d) return true;
    if (this.coalesce(item.event.event_type)) {
      if (q) this.supersedeOlder(q, item.event.event_type);
      // In the other lanes too (their own keeps its deliveries until it is admitted there, and supersedes them then).
      // A lane that empties drains: the ones held here before this one may go on.
      for (const [k, lane] of this.lanes) if (k !== to && lane.holdsKey(key)) lane.supersedeWaiting(key, item.event.event_type);
      q = this.keys.get(key);
    }
    if (!q) this.keys.set(key, q = []);
    q.push({ d, lane: to });
    this.events.add(item.event.i_event);
    if (q.length === 1) this.drained(key); // coalescing took every delivery ahead of it: it may go on now
    return true;
  }

  /**
   * A lane holds no delivery of `key` any more: the deliveries held behind
   * go to their lanes, in commit order, as long as no other lane holds the key.
   */
  drained(key: string): void {
    if (this.keys.size === 0 || this.stopped) return;
    const q = this.keys.get(key);
    // A delivery admitted may finish at once (a type without request steps: skipped), draining its
    // lane again: that inner call goes on with the same list, and this loop after it.
    while (q && q.length > 0 && !this.heldElsewhere(key, q[0]!.lane)) {
      const g = q.shift()!;
      this.events.delete(g.d.item.event.i_event);
      if (q.length === 0) this.keys.delete(key);
      this.lanes.get(g.lane)!.admit(g.d);
    }
  }

  /** Graceful stop: nothing goes on to a lane any more (what is held here is durable already). */
  stop(): void {
    this.stopped = true;
  }

  private heldElsewhere(key: string, to: K): boolean {
    for (const [k, lane] of this.lanes) if (k !== to && lane.holdsKey(key)) return true;
    return false;
  }

  /** Supersedes the deliveries of `type` held in `q` (the list of one key, left in place even if it empties). */
  private supersedeOlder(q: Gated<K>[], type: string): void {
    for (let i = q.length - 1; i >= 0; i--) {
      const g = q[i]!;
      if (g.d.item.event.event_type !== type) continue;
      q.splice(i, 1);
      this.events.delete(g.d.item.event.i_event);
      this.lanes.get(g.lane)!.supersede(g.d);
    }
  }
}
