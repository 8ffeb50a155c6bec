import type { Item } from '../delivery/item.ts';
import { EspfError } from '../errors.ts';
import { formatLsn } from '../stream/lsn.ts';
import { AckTracker, type Ticket } from './ack-tracker.ts';

/** A transaction admitted from the stream, while its parts are handed out. */
export interface Admission {
  /** Where its commit record starts: names the transaction (src/stream/replication.ts, StreamTxHead). */
  readonly commitLsn: bigint;
  /** The transaction may already have outcomes (it is at or before the replay horizon). */
  readonly replay: boolean;
  /** Events of the transaction handed out so far (the stream may bring them again after a reconnect). */
  readonly handedOut: number;
}

/**
 * Items not yet durable before the stream is held, by default: enough to keep
 * the requests on the wire (src/delivery/attempter.ts, maxInFlight) and the
 * record stage's batches busy. Read further ahead, events only wait in memory
 * longer: each outlives the young generation and costs the garbage collector
 * (10,000 cost `espf run` about 14 % more CPU per event in `e2e`,
 * docs/benchmarks.md, "Fewer objects per event").
 */
export const DEFAULT_MAX_HELD = 2_000;

interface Open {
  readonly commitLsn: bigint;
  readonly replay: boolean;
  handedOut: number;
  readonly ticket: Ticket;
  /** The tracker of the slot it came from (a slot made anew starts another). */
  readonly tracker: AckTracker;
}

/**
 * The acknowledge stage, the only one that knows WAL positions. Every
 * transaction from the stream is admitted in commit order at its first part
 * and holds its position until it is closed (its last part handed out) and
 * each of its items is reported durable (by the record stage, or by a
 * dispatcher's commit); the slot then advances past the settled prefix. It
 * also holds the stream back while too many items are not yet durable, also
 * in the middle of a large transaction: so memory is bounded whatever the
 * size of a transaction.
 */
export class Acknowledger {
  private tracker: AckTracker;
  private readonly held = new Map<Item, { readonly ticket: Ticket; readonly tracker: AckTracker }>();
  private replayHorizon = 0n;
  /** The end of the last transaction closed: a transaction whose commit starts below it was admitted before. */
  private lastClosedEnd = 0n;
  /** The transaction being handed out (admitted, not closed yet). */
  private open?: Open;
  private roomWaiters: (() => void)[] = [];
  /** The stream has brought something past the replay horizon. */
  private past = false;
  private pastWaiters: (() => void)[] = [];

  constructor(
    /** Everything up to this position is durable: acknowledge it to the server. */
    private readonly advance: (lsn: bigint) => void,
    /** Items not yet durable before the stream is held (back-pressure). */
    private readonly maxHeld = DEFAULT_MAX_HELD,
  ) {
    this.tracker = new AckTracker(0n, advance);
  }

  /**
   * The slot was made anew (it was missing: a failover without failover
   * slots, or dropped): its positions start over and have nothing to do with
   * the old slot's. What was admitted from the old slot still settles, but
   * never advances the new one (a transaction the old slot was handing out
   * is never finished by it: the catch-up that runs before the new slot
   * streams recorded every event that had no delivery row, src/run/sender.ts,
   * recoverSlot). Transactions of the new slot are admitted from the start,
   * and those up to `horizon` are replays.
   */
  newSlot(horizon: bigint): void {
    this.tracker.detach();
    this.tracker = new AckTracker(0n, this.advance);
    this.lastClosedEnd = 0n;
    this.open = undefined;
    this.replayHorizon = horizon;
    this.past = false;
    this.advance(0n); // nothing of the new slot is durable yet: the stream tells the server nothing of the old one's
    for (const f of this.roomWaiters.splice(0)) f();
  }

  /**
   * Resolves once the stream has brought a transaction (or a heartbeat)
   * past the replay horizon: every replayed transaction is handed out, so
   * what a replay records as waiting has been reported to the record stage.
   * (The waiting deliveries are read only then: src/run/sender.ts.)
   */
  pastReplay(): Promise<void> {
    if (this.past) return Promise.resolve();
    return new Promise((resolve) => this.pastWaiters.push(resolve));
  }

  private passed(lsn: bigint): void {
    if (this.past || lsn <= this.replayHorizon) return;
    this.past = true;
    for (const f of this.pastWaiters.splice(0)) f();
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
   * A part of a committed transaction from the stream, named by where its
   * commit starts. Null when the transaction was admitted and closed before:
   * after a reconnect the server replays from the last acknowledged position,
   * and what was handed out already is held (or settled) here. The
   * transaction being handed out is the same admission again: its first
   * `handedOut` events were handed out before the reconnect.
   */
  admit(commitLsn: bigint): Admission | null {
    const o = this.open;
    if (o) {
      if (o.commitLsn === commitLsn) return o;
      // The server replays from before the open transaction: it cannot bring another first.
      throw new EspfError('ESPF_STREAM_ORDER', `the stream brought the transaction committed at ${formatLsn(commitLsn)} while the one at ${formatLsn(o.commitLsn)} was not finished`);
    }
    if (commitLsn < this.lastClosedEnd) return null;
    this.passed(commitLsn);
    this.open = { commitLsn, replay: commitLsn <= this.replayHorizon, handedOut: 0, ticket: this.tracker.open(), tracker: this.tracker };
    return this.open;
  }

  /** The first `events` events of the admitted transaction are handed out. */
  handedOut(a: Admission, events: number): void {
    const o = this.opened(a);
    if (o && events > o.handedOut) o.handedOut = events;
  }

  /** Every part of the admitted transaction is handed out; its commit ends at `endLsn`. */
  close(a: Admission, endLsn: bigint): void {
    const o = this.opened(a);
    if (!o) return;
    this.open = undefined;
    if (endLsn > this.lastClosedEnd) this.lastClosedEnd = endLsn;
    o.tracker.close(o.ticket, endLsn);
  }

  private opened(a: Admission): Open | undefined {
    return a === this.open ? this.open : undefined;
  }

  /** The item belongs to the admitted transaction and holds it until reported durable. */
  hold(a: Admission, item: Item): void {
    const o = this.opened(a);
    if (!o) return;
    o.tracker.hold(o.ticket);
    this.held.set(item, o); // its ticket and tracker: no object per item
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

  /**
   * A keepalive: the server has sent everything up to `lsn` and the stream has
   * handed on all of it. When nothing handed out is unsettled, that position
   * is durable too: acknowledging it lets an idle slot advance and lets a
   * server shutdown (which waits for the flush position) proceed.
   */
  keepalive(lsn: bigint): void {
    if (this.open === undefined && this.tracker.unsettled === 0) this.tracker.passThrough(lsn);
  }

  /** A position with nothing to deliver (a heartbeat message): advance to it once everything before is settled. */
  passThrough(lsn: bigint): void {
    this.passed(lsn);
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
