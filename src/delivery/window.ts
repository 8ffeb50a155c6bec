import type { Item } from './item.ts';

/** Accounts (order keys) remembered as spilled; past this every new delivery is spilled until the database is caught up. */
const MAX_SPILLED_KEYS = 100_000;

/** What the pages of waiting deliveries compare with to know they have caught up. */
export interface SpillMark {
  readonly seq: number;
  readonly allPersisted: boolean;
}

/**
 * The memory window of one http handler (docs/operations.md, "Memory"). At
 * most `size` deliveries are held in memory; the others are "spilled": they
 * wait only as rows of espf.event_deliveries (PENDING) and come back page by
 * page in stream order (src/pipeline/waiting.ts) as room frees up.
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
  private unpersisted: Item[] = [];
  private pruneAt = 1024;
  private readonly finishing = new Map<number, Item>();
  private finishingPruneAt = 1024;
  /** A page is being read (between beginPage and endPage). */
  private pageOpen = false;

  constructor(readonly size: number) {}

  /** Some deliveries wait only in the database. */
  get spilled(): boolean { return this.isSpilled; }

  /** How many waiting deliveries a page may bring into memory now (it leaves a fifth of the window to new events). */
  room(inMemory: number): number {
    return Math.max(0, Math.floor(this.size * 0.8) - inMemory);
  }

  /** A new delivery of `key` must be spilled (memory holds `inMemory`). */
  mustSpill(key: string, inMemory: number): boolean {
    if (inMemory >= this.size) return true;
    return this.isSpilled && (this.unknownKeys || this.overflow || this.keys.has(key));
  }

  /** `item` goes to the database only (the caller records it PENDING). */
  spill(item: Item): void {
    this.isSpilled = true;
    this.seq++;
    if (!this.overflow) {
      this.keys.add(item.orderKey);
      if (this.keys.size > MAX_SPILLED_KEYS) {
        this.overflow = true;
        this.keys.clear();
      }
    }
    this.unpersisted.push(item);
    if (this.unpersisted.length >= this.pruneAt) this.prune();
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

  mark(): SpillMark {
    this.prune();
    return { seq: this.seq, allPersisted: this.unpersisted.length === 0 };
  }

  /** Forgets the spills already committed (amortised: the list at most doubles between two passes). */
  private prune(): void {
    this.unpersisted = this.unpersisted.filter((i) => !i.persisted);
    this.pruneAt = Math.max(1024, 2 * this.unpersisted.length);
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
    this.unpersisted = [];
    this.finishing.clear();
    return true;
  }

  /**
   * A delivery held in memory finished; its DELIVERED or FAILED row is being
   * written (`persisted` turns true when it is committed). Until a page is
   * read after that, a page may still show the delivery waiting.
   */
  finished(item: Item): void {
    if (!this.isSpilled) return;
    this.finishing.set(item.event.i_event, item);
    // Pages may be read seldom (or not at all while a replay is handed out):
    // forget, now and then, what is committed (amortised, as for spills),
    // but not while a page is read: it may predate those commits.
    if (this.finishing.size >= this.finishingPruneAt && !this.pageOpen) {
      this.forgetCommitted();
      this.finishingPruneAt = Math.max(1024, 2 * this.finishing.size);
    }
  }

  /** A page is about to be read: it sees every final row committed by now. */
  beginPage(): void {
    this.forgetCommitted();
    this.pageOpen = true;
  }

  /** The page's rows are in memory (or it failed). */
  endPage(): void {
    this.pageOpen = false;
  }

  /** Finished deliveries whose final row is committed: no page shows them waiting any more. */
  private forgetCommitted(): void {
    for (const [i, item] of this.finishing) if (item.persisted) this.finishing.delete(i);
  }

  /** Finished, and its final row perhaps not committed when the current page was read. */
  recentlyFinished(iEvent: number): boolean {
    return this.finishing.has(iEvent);
  }
}
