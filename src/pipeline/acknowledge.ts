import type { Item } from '../delivery/item.ts';
import { AckTracker, type Ticket } from './ack-tracker.ts';

/** A transaction admitted from the stream, while its items are handed out. */
export interface Admission {
  /** The transaction may already have outcomes (it is at or before the replay horizon). */
  readonly replay: boolean;
  readonly ticket: Ticket;
  /** The tracker of the slot it came from (a slot made anew starts another). */
  readonly tracker: AckTracker;
}

/**
 * The acknowledge stage, the only one that knows WAL positions. Every
 * transaction from the stream is admitted in commit order and holds its
 * position until each of its items is reported durable (by the record stage,
 * or by a dispatcher's commit); the slot then advances past the settled prefix.
 * It also holds the stream back while too many items are not yet durable.
 */
export class Acknowledger {
  private tracker: AckTracker;
  private readonly held = new Map<Item, { readonly ticket: Ticket; readonly tracker: AckTracker }>();
  private replayHorizon = 0n;
  private lastAdmitted = 0n;
  private previousAdmitted = 0n;
  private roomWaiters: (() => void)[] = [];

  constructor(
    /** Everything up to this position is durable: acknowledge it to the server. */
    private readonly advance: (lsn: bigint) => void,
    /** Items not yet durable before the stream is held (back-pressure). */
    private readonly maxHeld = 10_000,
  ) {
    this.tracker = new AckTracker(0n, advance);
  }

  /**
   * The slot was made anew (it was missing: a failover without failover
   * slots, or dropped): its positions start over and have nothing to do with
   * the old slot's. What was admitted from the old slot still settles, but
   * never advances the new one; the catch-up that runs before the new slot
   * streams recorded every event that had no delivery row
   * (src/run/sender.ts, recoverSlot). Transactions of the new slot are
   * admitted from the start, and those up to `horizon` are replays.
   */
  newSlot(horizon: bigint): void {
    this.tracker.detach();
    this.tracker = new AckTracker(0n, this.advance);
    this.lastAdmitted = 0n;
    this.previousAdmitted = 0n;
    this.replayHorizon = horizon;
    for (const f of this.roomWaiters.splice(0)) f();
  }

  get durableLsn(): bigint { return this.tracker.durableLsn; }
  /** Items handed out whose outcome is not yet durable. */
  get heldItems(): number { return this.held.size; }
  /** Nothing handed out holds the slot back. */
  get idle(): boolean { return this.tracker.unsettled === 0; }

  /** Transactions up to this position may already have outcomes recorded (a restart replays them). */
  raiseReplayHorizon(lsn: bigint): void {
    if (lsn > this.replayHorizon) this.replayHorizon = lsn;
  }

  /**
   * A committed transaction from the stream. Null when it was admitted before:
   * after a reconnect the server replays from the last acknowledged position,
   * and what was handed out already is held (or settled) here.
   */
  admit(endLsn: bigint): Admission | null {
    if (endLsn <= this.lastAdmitted) return null;
    this.previousAdmitted = this.lastAdmitted;
    this.lastAdmitted = endLsn;
    return { replay: endLsn <= this.replayHorizon, ticket: this.tracker.open(endLsn), tracker: this.tracker };
  }

  /** Takes back the last admission before anything of it was handed out (its lookup failed; the stream brings it again). */
  retract(a: Admission): void {
    if (a.tracker === this.tracker && this.tracker.retract(a.ticket)) this.lastAdmitted = this.previousAdmitted;
  }

  /** The item belongs to the admitted transaction and holds it until reported durable. */
  hold(a: Admission, item: Item): void {
    a.tracker.hold(a.ticket);
    this.held.set(item, { ticket: a.ticket, tracker: a.tracker });
  }

  /** Every item of the admitted transaction is handed out. */
  close(a: Admission): void {
    a.tracker.release(a.ticket);
  }

  /** These items' outcomes are durable (items that hold nothing are ignored). */
  durable(items: readonly Item[]): void {
    for (const item of items) {
      const h = this.held.get(item);
      if (h === undefined) continue;
      this.held.delete(item);
      h.tracker.release(h.ticket);
    }
    if (this.roomWaiters.length && this.held.size < this.maxHeld / 2) {
      for (const f of this.roomWaiters.splice(0)) f();
    }
  }

  /** A position with nothing to deliver (a heartbeat message): advance to it once everything before is settled. */
  passThrough(lsn: bigint): void {
    this.tracker.passThrough(lsn);
  }

  /** Resolves when the stream may go on: at once, or when half of the held items are durable. */
  room(): Promise<void> | undefined {
    if (this.held.size < this.maxHeld) return undefined;
    return new Promise<void>((resolve) => this.roomWaiters.push(resolve));
  }

  /** Lets whatever waits for room go (on stop). */
  releaseWaiters(): void {
    for (const f of this.roomWaiters.splice(0)) f();
  }
}
