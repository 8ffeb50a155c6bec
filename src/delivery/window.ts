import { DurableBatches, type Durable } from './durability.ts';

/** Accounts (order keys) remembered as spilled; past this every new delivery is spilled until the database is caught up. */
const MAX_SPILLED_KEYS = 100_000;
/** Deliveries of one handler held in memory at most, by default: far above the 2,000 not yet durable that hold the stream back (src/pipeline/acknowledge.ts), so a fast receiver never meets the window. */
export const DEFAULT_WINDOW = 12_000;

/** What the pages of waiting deliveries compare with to know they have caught up. */
export interface SpillMark {
  readonly seq: number;
  readonly allPersisted: boolean;
}

/**
 * The memory window of one http handler (docs/operations.md, "Memory"). At
 * most `size` deliveries are held in memory; the others are "spilled": they
 * wait only as rows of espf.event_deliveries (PENDING) and come back page by
 * page in stream order as room frees up. The waiting deliveries
 * (src/pipeline/waiting.ts) own it and read the pages; the handler
 * (src/delivery/http-handler.ts) counts what enters and leaves memory.
 *
 * Per-account order: while some delivery of an account (order key) waits only
 * in the database, the account's new deliveries are spilled too, behind it.
 * Deliveries of accounts with nothing spilled still go straight into memory
 * while there is room, so a new event of a quiet account is not stuck behind a
 * backlog of other accounts. The accounts spilled are remembered (up to
 * 100,000; past that, or at start when any account may have rows waiting,
 * every new delivery is spilled) until the pages have caught up.
 */
export class SpillWindow {
  private isSpilled = false;
  private unknownKeys = false;
  private overflow = false;
  private readonly keys = new Set<string>();
  private seq = 0;
  private inMemory = 0;
  private readonly spills = new DurableBatches();
  private readonly finals = new DurableBatches();
  private readonly finishing = new Map<number, Durable>();
  private finishingPruneAt = 1024;
  /** A page is being read (between beginPage and endPage). */
  private pageOpen = false;

  constructor(
    readonly size: number,
    /** Deliveries wait in the database only and there is room for a page of them. */
    private readonly wantPage: () => void = () => undefined,
  ) {}

  /** Some deliveries wait only in the database. */
  get spilled(): boolean { return this.isSpilled; }
  /** Deliveries held in memory. */
  get held(): number { return this.inMemory; }

  /** How many waiting deliveries a page may bring into memory now (it leaves a fifth of the window to new events). */
  get room(): number {
    return Math.max(0, Math.floor(this.size * 0.8) - this.inMemory);
  }

  /** A new delivery of `key` must be spilled. */
  mustSpill(key: string): boolean {
    if (this.inMemory >= this.size) return true;
    return this.isSpilled && (this.unknownKeys || this.overflow || this.keys.has(key));
  }

  /** A delivery went to the database only: its PENDING record commits when `durable` resolves. */
  spill(key: string, durable: Promise<void>): void {
    this.isSpilled = true;
    this.seq++;
    if (!this.overflow) {
      this.keys.add(key);
      if (this.keys.size > MAX_SPILLED_KEYS) {
        this.overflow = true;
        this.keys.clear();
      }
    }
    this.spills.of(durable);
  }

  /** A delivery came into memory. */
  entered(): void {
    this.inMemory++;
  }

  /**
   * A delivery held in memory finished; its final row (DELIVERED, FAILED,
   * SUPERSEDED) commits when `durable` resolves. Until a page is read after
   * that, a page may still show the delivery waiting.
   */
  finished(iEvent: number, durable: Promise<void>): void {
    this.inMemory--;
    if (!this.isSpilled) return;
    this.finishing.set(iEvent, this.finals.of(durable));
    // Pages may be read seldom (or not at all while a replay is handed out):
    // forget, now and then, what is committed (amortised), but not while a
    // page is read: it may predate those commits.
    if (this.finishing.size >= this.finishingPruneAt && !this.pageOpen) {
      this.forgetCommitted();
      this.finishingPruneAt = Math.max(1024, 2 * this.finishing.size);
    }
    if (this.room >= this.size * 0.3) this.wantPage();
  }

  /** At start: deliveries may wait in the database for any account. */
  startSpilled(): void {
    this.isSpilled = true;
    this.unknownKeys = true;
  }

  /** The pages have passed every row that waited at start: from now on only the accounts spilled since can have rows ahead. */
  pastStartHorizon(): void {
    this.unknownKeys = false;
  }

  /** A page is about to be read: it sees every final row committed by now. Returns the mark to give `caughtUp`. */
  beginPage(): SpillMark {
    this.forgetCommitted();
    this.pageOpen = true;
    return { seq: this.seq, allPersisted: this.spills.pending === 0 };
  }

  /** The page's rows are in memory (or it failed). */
  endPage(): void {
    this.pageOpen = false;
  }

  /** Finished deliveries whose final row is committed: no page shows them waiting any more. */
  private forgetCommitted(): void {
    for (const [i, d] of this.finishing) if (d.done) this.finishing.delete(i);
  }

  /**
   * A page came back short. If every spill was committed before it was read
   * (`mark`, taken before) and nothing was spilled since, nothing waits in the
   * database beyond it: memory holds every waiting delivery again.
   */
  caughtUp(mark: SpillMark): boolean {
    if (!mark.allPersisted || mark.seq !== this.seq) return false;
    this.isSpilled = false;
    this.unknownKeys = false;
    this.overflow = false;
    this.keys.clear();
    this.finishing.clear();
    return true;
  }

  /** Finished, and its final row perhaps not committed when the current page was read. */
  recentlyFinished(iEvent: number): boolean {
    return this.finishing.has(iEvent);
  }
}
