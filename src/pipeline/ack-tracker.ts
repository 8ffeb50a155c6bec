/**
 * Which WAL position may be acknowledged. Every transaction from the stream
 * gets a ticket in commit order, opened at its first part and closed with
 * the commit's end once every part is handed out; a ticket is settled when it
 * is closed and every outcome it carries is durable. The slot may advance to
 * the end of the last ticket of the settled prefix, never past an unsettled one.
 */
export interface Ticket {
  /** The commit's end, known when the ticket is closed (0 before). */
  endLsn: bigint;
  pending: number;
  settled: boolean;
}

export class AckTracker {
  private readonly tickets: Ticket[] = [];
  private head = 0;
  private durable: bigint;
  private onAdvance: (lsn: bigint) => void;

  constructor(startLsn: bigint, onAdvance: (lsn: bigint) => void) {
    this.durable = startLsn;
    this.onAdvance = onAdvance;
  }

  /** The highest position whose outcomes are all durable. */
  get durableLsn(): bigint { return this.durable; }

  /** Tickets not yet settled (transactions whose outcomes are not all durable). */
  get unsettled(): number { return this.tickets.length - this.head; }

  open(): Ticket {
    const t: Ticket = { endLsn: 0n, pending: 1, settled: false }; // 1 = the transaction itself is still being handed out
    this.tickets.push(t);
    return t;
  }

  /** Every part of the ticket's transaction is handed out; it ends at `endLsn`. */
  close(t: Ticket, endLsn: bigint): void {
    t.endLsn = endLsn;
    this.release(t);
  }

  /** One more outcome this ticket waits for. */
  hold(t: Ticket): void {
    t.pending++;
  }

  /** One outcome of this ticket is durable (or the hand-out is finished). */
  release(t: Ticket): void {
    if (--t.pending > 0) return;
    t.settled = true;
    let advanced = false;
    while (this.head < this.tickets.length && this.tickets[this.head]!.settled) {
      const done = this.tickets[this.head++]!;
      if (done.endLsn > this.durable) this.durable = done.endLsn;
      advanced = true;
    }
    if (this.head > 1024 && this.head * 2 > this.tickets.length) {
      this.tickets.splice(0, this.head);
      this.head = 0;
    }
    if (advanced) this.onAdvance(this.durable);
  }

  /** A position with nothing to deliver (a heartbeat message): advance to it once everything before is settled. */
  passThrough(lsn: bigint): void {
    this.close(this.open(), lsn);
  }

  /** Its positions no longer mean anything to the slot (the slot was made anew): it settles tickets but never advances it again. */
  detach(): void {
    this.onAdvance = () => undefined;
  }
}
