import type { Db } from '../db/connect.ts';
import { lastWaiting, takeRequeued, waitingPage, type PageCursor, type WaitingRow } from '../db/deliveries.ts';
import { accountOf, orderKey, type Item } from '../delivery/item.ts';
import type { StepAnswer } from '../delivery/steps/render.ts';
import { DEFAULT_WINDOW, SpillWindow } from '../delivery/window.ts';
import { oneLine } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import { Poller } from '../poller.ts';
import type { Shard } from '../run/shard.ts';
import { parseLsn } from '../stream/lsn.ts';
import type { StreamEvent } from '../stream/replication.ts';

/** Rows read per page at most. */
const PAGE_MAX = 5000;

/** What the pages hand waiting deliveries to: an http handler (src/delivery/http-handler.ts). */
export interface WaitingQueue {
  readonly name: string;
  /** A delivery that waits in the database; false when it is in memory already. */
  enqueueWaiting(item: Item): boolean;
}

interface Pages {
  cursor: PageCursor;
  /** At start: the last row that waited then; the pages pass it once every such row is in memory. */
  horizon: PageCursor | null;
  loading: boolean;
  /** The pages being read now. */
  reading?: Promise<unknown>;
}

/**
 * The second way into the deliver stage, beside the stream: deliveries that
 * wait in espf.event_deliveries. A row holds each of these items: they hold
 * no WAL.
 *
 * Waiting deliveries stay in the database: each http handler holds a bounded
 * window of them in memory (src/delivery/window.ts). This stage owns each
 * handler's window (the handler is given it, and counts what enters and
 * leaves memory) and reads the next page (in stream order, after a cursor)
 * whenever the window has room.
 * At start every handler begins with its waiting deliveries in the database
 * only, so a restart in front of a million of them reads them page by page.
 * Every `pollMs` it also takes the deliveries marked requeued (espf resend,
 * maintenance reclaiming a moved handler's rows), as many as there is room for.
 */
export class WaitingDeliveries {
  private readonly poller: Poller;
  private readonly pages = new Map<string, Pages>();
  private readonly windows = new Map<string, SpillWindow>();
  private stopped = false;
  /** Between resume() and release(): no page is read. */
  private holding = false;

  constructor(private readonly opts: {
    readonly db: Db;
    readonly log: Logger;
    /** The http handlers this instance serves now. */
    readonly handlers: () => readonly WaitingQueue[];
    /** The http handler of this name, if there is one. */
    readonly handler: (name: string) => WaitingQueue | undefined;
    /** Deliveries of one handler held in memory at most (default DEFAULT_WINDOW). */
    readonly window?: number;
    /** This process's shard (README "Shards"): only the deliveries of its events are read. */
    readonly shard: Shard;
    readonly onDbError: (err: unknown) => void;
  }) {
    this.poller = new Poller(() => this.poll(), (err) => {
      opts.onDbError(err);
      opts.log.warn({ err: oneLine(err) }, 'taking requeued deliveries failed; will try again');
    });
  }

  /** The memory window of handler `name`, made on first use (the handler is given it when it is made). */
  window(name: string): SpillWindow {
    let w = this.windows.get(name);
    if (!w) this.windows.set(name, w = new SpillWindow(this.opts.window ?? DEFAULT_WINDOW, () => this.kick(name)));
    return w;
  }

  /** Every handler's new deliveries go behind the database (the slot is being made anew: src/run/sender.ts, recoverSlot). */
  spillNew(): void {
    for (const h of this.opts.handlers()) this.window(h.name).startSpilled();
  }

  /**
   * At start, and after a catch-up while running (the slot was made anew):
   * every handler's waiting deliveries will be read page by page from the
   * first; until the pages have passed the last row that waits now, every
   * new delivery goes behind them (spilled). No page is read until `release()`:
   * a replay of the stream records, behind the same commit position, the
   * deliveries it finds unrecorded, and a page read before those rows are
   * committed would pass them.
   */
  async resume(): Promise<void> {
    this.holding = true;
    // Pages being read from the old cursor end first (they skip what is in memory already).
    await Promise.all([...this.pages.values()].map((p) => p.reading?.catch(() => undefined)));
    for (const h of this.opts.handlers()) {
      const p: Pages = { cursor: { lsn: null, iEvent: 0 }, horizon: null, loading: true }; // no page until the horizon is read
      this.pages.set(h.name, p);
      const w = this.window(h.name);
      w.startSpilled();
      try {
        p.horizon = await lastWaiting(this.opts.db, h.name, this.opts.shard);
      } finally {
        p.loading = false;
      }
      if (!p.horizon) w.pastStartHorizon();
    }
  }

  /**
   * The stream has passed what it replays and the deliveries the replay
   * spilled are committed (src/run/sender.ts): read the first pages.
   */
  async release(): Promise<void> {
    if (!this.holding) return;
    this.holding = false;
    let waiting = 0;
    for (const h of this.opts.handlers()) {
      try {
        waiting += await this.load(h);
      } catch (err) {
        this.opts.onDbError(err);
        this.opts.log.warn({ err: oneLine(err), handler: h.name }, 'reading waiting deliveries failed; will try again');
      }
    }
    if (waiting) this.opts.log.info({ resumed: waiting }, 'resumed waiting deliveries (the first page of each handler)');
  }

  start(pollMs: number): void {
    this.poller.start(pollMs);
  }

  /** The handler has room and deliveries that wait in the database only: read its next page (unless one is being read). */
  private kick(name: string): void {
    const p = this.pages.get(name);
    if (this.stopped || this.holding || (p && p.loading) || !this.window(name).spilled) return;
    const h = this.opts.handler(name);
    if (!h) return;
    void this.load(h).catch((err: unknown) => {
      this.opts.onDbError(err);
      this.opts.log.warn({ err: oneLine(err), handler: h.name }, 'reading waiting deliveries failed; will try again');
    });
  }

  /** Reads pages into `h` while it has room; the number of deliveries it took. */
  private async load(h: WaitingQueue): Promise<number> {
    let p = this.pages.get(h.name);
    if (!p) this.pages.set(h.name, p = { cursor: { lsn: null, iEvent: 0 }, horizon: null, loading: false });
    if (p.loading) return 0;
    p.loading = true;
    const reading = this.loadPages(h, p);
    p.reading = reading;
    return reading;
  }

  private async loadPages(h: WaitingQueue, p: Pages): Promise<number> {
    const w = this.window(h.name);
    let took = 0;
    try {
      while (!this.stopped && !this.holding && w.spilled) {
        const want = Math.min(PAGE_MAX, w.room);
        if (want < Math.min(500, w.size / 10)) break; // wait for more room: pages stay large
        const mark = w.beginPage();
        let rows: WaitingRow[];
        try {
          rows = await waitingPage(this.opts.db, h.name, this.opts.shard, p.cursor, want);
          for (const r of rows) if (this.enqueue(h, w, r)) took++;
        } finally {
          w.endPage();
        }
        const last = rows.at(-1);
        if (last) {
          p.cursor = { lsn: last.commit_lsn, iEvent: Number(last.i_event) };
          if (p.horizon && !before(p.cursor, p.horizon)) {
            p.horizon = null;
            w.pastStartHorizon();
          }
        }
        if (rows.length < want) {
          w.caughtUp(mark);
          break;
        }
      }
    } finally {
      p.loading = false;
    }
    return took;
  }

  private async poll(): Promise<void> {
    const handlers = this.opts.handlers();
    for (const h of handlers) this.kick(h.name);
    const room = handlers.reduce((n, h) => n + this.window(h.name).room, 0);
    if (handlers.length === 0 || room === 0) return;
    const rows = await takeRequeued(this.opts.db, handlers.map((h) => h.name), this.opts.shard, Math.min(room, 10_000));
    const byName = new Map(handlers.map((h) => [h.name, h]));
    for (const r of rows) {
      const h = byName.get(r.handler);
      if (h) this.enqueue(h, this.window(h.name), r);
    }
    if (rows.length) this.opts.log.info({ requeued: rows.length }, 'took requeued deliveries');
  }

  /** Hands the delivery of row `r` to `h`, unless it is in memory already or finished since the page was read. */
  private enqueue(h: WaitingQueue, w: SpillWindow, r: WaitingRow): boolean {
    return !w.recentlyFinished(Number(r.i_event)) && h.enqueueWaiting(itemFromRow(r));
  }

  stop(): void {
    this.stopped = true;
    this.poller.stop();
  }
}

/** Stream order: (commit position, i_event); rows without a position first. */
function before(a: PageCursor, b: PageCursor): boolean {
  if (a.lsn === null || b.lsn === null) return a.lsn === null && (b.lsn !== null || a.iEvent < b.iEvent);
  const x = parseLsn(a.lsn);
  const y = parseLsn(b.lsn);
  return x < y || (x === y && a.iEvent < b.iEvent);
}

function itemFromRow(r: WaitingRow): Item {
  const event: StreamEvent = { i_event: Number(r.i_event), event_type: r.event_type, variables: r.variables, source_i_event: r.source_i_event };
  return {
    event, handler: r.handler, orderKey: orderKey(event), iAccount: accountOf(event),
    commitLsn: r.commit_lsn, committedAt: r.committed_at,
    resumed: {
      attempts: r.attempts, urlsDone: r.urls_done, firstAttemptAt: r.first_attempt_at,
      nextAttemptAt: r.state === 'RETRY' ? r.next_attempt_at : null,
      stepsDone: r.steps_done ?? 0, stepAnswers: Array.isArray(r.step_answers) ? r.step_answers as StepAnswer[] : null,
    },
  };
}
