import { Backoff } from '../backoff.ts';
import type { Db } from '../db/connect.ts';
import { recordDeliveries, type DeliveryRecord } from '../db/deliveries.ts';
import { oneLine, SQLSTATE, sqlState } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import type { AttemptState, Item } from './item.ts';
import { isFinalState, type DeliveryState as AnyDeliveryState } from '../db/delivery-states.ts';

/** The states an http handler records (src/db/delivery-states.ts has every state; DISPATCHED is a dispatcher's). */
export type DeliveryState = Exclude<AnyDeliveryState, 'DISPATCHED'>;

/** One state a delivery reached, with its attempt state then: what its row of espf.event_deliveries says. */
export interface Outcome extends AttemptState {
  readonly state: DeliveryState;
  readonly httpStatus?: number | null;
  readonly error?: string | null;
  readonly at?: Date;
  /** A request step is done and the next one waits for this record (src/delivery/steps/run.ts): PENDING, but it replaces any record queued before it. */
  readonly intermediate?: boolean;
}

/** The records of one delivery in a batch: the newest one, and the item(s) it was reported for. */
interface Entry {
  row: DeliveryRecord;
  item: Item;
  /** Other items of the same (event, handler) reported in the same batch: rare (a page may read back a delivery held in memory). */
  more?: Item[];
}

/** Outcomes gathered to be written together, and the one promise their records share. */
class Batch {
  readonly entries = new Map<string, Entry>();
  private promise?: Promise<void>;
  private resolvers: (() => void)[] = [];

  /** Resolves when this batch commits. */
  get durable(): Promise<void> {
    return this.promise ??= new Promise<void>((resolve) => this.resolvers.push(resolve));
  }

  /** The promises of a failed batch resolve with this one. */
  absorb(failed: Batch): void {
    for (const r of failed.resolvers) this.resolvers.push(r);
    failed.resolvers = [];
  }

  committed(): void {
    for (const r of this.resolvers) r();
    this.resolvers = [];
  }
}

function holds(e: Entry, item: Item): boolean {
  return e.item === item || (e.more !== undefined && e.more.includes(item));
}

function add(e: Entry, item: Item): void {
  if (!holds(e, item)) (e.more ??= []).push(item);
}

/**
 * The record stage: writes delivery outcomes in batches to
 * espf.event_deliveries (espf.record_deliveries). While one batch is being
 * written the next one gathers, so recording never becomes the bottleneck.
 * `record` returns the promise of its batch, shared by every record in it,
 * resolved when the batch commits; the items of a committed batch are also
 * reported to `durable` (the acknowledge stage). A failed write is retried
 * with the next batch (a newer record of the same delivery replaces an older
 * one; the promises of both resolve when it commits).
 */
export class ResultsWriter {
  private batch = new Batch();
  private writing = false;
  private idle: (() => void)[] = [];
  private readonly backoff = new Backoff();
  private inFlightRows = 0;
  private closeAt = Infinity;
  private closed = false;
  /** Outcomes reported so far, and how many of the first of them are committed (or replaced by a newer committed one). */
  private reported = 0;
  private committedUpTo = 0;
  private barriers: { upTo: number; resolve: () => void }[] = [];
  batches = 0;
  rows = 0;
  /** Outcomes dropped because their event is no longer the one delivered (an i_event reused after a failover). */
  dropped = 0;

  constructor(
    private readonly db: Db,
    private readonly instance: string,
    private readonly log: Logger,
    /** Called with the items of each committed batch. */
    private readonly durable: (items: readonly Item[]) => void = () => undefined,
    private readonly onError: (err: unknown) => void = () => undefined,
  ) {}

  get queued(): number { return this.batch.entries.size; }

  /** Records `outcome` of `item`; resolves when it is committed (never, if the writer is closed first). */
  record(item: Item, outcome: Outcome): Promise<void> {
    this.reported++;
    const at = outcome.at ? outcome.at.getTime() : Date.now();
    const attempted = outcome.state !== 'PENDING' || outcome.intermediate === true;
    // Its first outcome: no row of it exists yet (Item.fresh), unless an earlier one is queued in this batch.
    const fresh = item.fresh === true;
    if (fresh) item.fresh = false;
    const finished = isFinalState(outcome.state);
    const row: DeliveryRecord = {
      i_event: item.event.i_event,
      handler: item.handler,
      state: outcome.state,
      event_type: item.event.event_type,
      order_key: item.orderKey,
      i_account: item.iAccount,
      commit_lsn: item.commitLsn,
      attempts: outcome.attempts,
      urls_done: outcome.urlsDone,
      last_http_status: outcome.httpStatus ?? null,
      last_error: outcome.error ?? null,
      next_attempt_at: outcome.state === 'RETRY' && outcome.nextAttemptAt ? outcome.nextAttemptAt.getTime() : null,
      committed_at: item.committedAt ? item.committedAt.getTime() : null,
      first_attempt_at: outcome.firstAttemptAt ? outcome.firstAttemptAt.getTime() : null,
      last_attempt_at: attempted ? at : null,
      finished_at: finished ? at : null,
      steps_done: outcome.stepsDone ?? 0,
      // Kept while the delivery waits (its later steps read them); a finished one needs them no more (a resend starts at step 1).
      step_answers: !finished && outcome.stepAnswers && outcome.stepAnswers.length > 0 ? outcome.stepAnswers : null,
      created_at: item.event.created_at ? item.event.created_at.getTime() : null,
      fresh,
    };
    const key = `${row.i_event}\u0000${row.handler}`;
    const entries = this.batch.entries;
    const prior = entries.get(key);
    if (prior) {
      // A PENDING record never replaces an outcome already queued for the same delivery (an intermediate one does).
      if (!(row.state === 'PENDING' && prior.row.state !== 'PENDING' && outcome.intermediate !== true)) {
        row.fresh = prior.row.fresh === true;
        prior.row = row;
      }
      add(prior, item);
    } else {
      entries.set(key, { row, item });
    }
    this.kick();
    return this.batch.durable;
  }

  private kick(): void {
    if (this.writing || this.batch.entries.size === 0 || this.closed) return;
    this.writing = true;
    setImmediate(() => void this.write());
  }

  private async write(): Promise<void> {
    const batch = this.batch;
    this.batch = new Batch();
    const rows: DeliveryRecord[] = [];
    for (const e of batch.entries.values()) rows.push(e.row);
    this.inFlightRows = rows.length;
    const upTo = this.reported; // the batch holds every outcome reported so far (a failed batch is put back whole)
    try {
      const stale = await recordDeliveries(this.db, this.instance, rows);
      if (stale.length > 0) {
        this.dropped += stale.length;
        this.log.warn({ instance: this.instance, i_events: stale.slice(0, 20), dropped: stale.length },
          `dropped ${stale.length} outcome(s) whose event is no longer the one delivered (an i_event handed out again after a failover; the new event is delivered on its own): i_event ${stale.slice(0, 20).join(', ')}`);
      }
      this.committedUpTo = upTo;
      if (this.barriers.length) this.barriers = this.barriers.filter((b) => { if (b.upTo > upTo) return true; b.resolve(); return false; });
      this.batches++;
      this.rows += rows.length;
      this.backoff.succeeded();
      batch.committed();
      const items: Item[] = [];
      const next = this.batch.entries;
      for (const [k, e] of batch.entries) {
        const again = next.size === 0 ? undefined : next.get(k);
        // An item with a newer outcome still to be written is reported with that one.
        if (!again || !holds(again, e.item)) items.push(e.item);
        if (e.more) for (const item of e.more) if (!again || !holds(again, item)) items.push(item);
      }
      this.durable(items);
    } catch (err) {
      // A fresh record whose row existed after all (another writer was first): written again at once, not fresh.
      const freshTaken = sqlState(err) === SQLSTATE.uniqueViolation && rows.some((r) => r.fresh === true);
      if (!freshTaken) this.onError(err);
      if (Date.now() >= this.closeAt) this.closed = true;
      if (freshTaken) this.log.info({ rows: rows.length }, 'a delivery recorded as new had a row already; the batch is written again as updates');
      else if (!this.closed) this.log.warn({ err: oneLine(err), rows: rows.length, retryInMs: this.backoff.nextMs }, 'recording outcomes failed; will retry');
      // Put the batch back under anything newer that arrived meanwhile, every record of it
      // written by INSERT … ON CONFLICT: a fresh one may have failed it (its row existed after all).
      const next = this.batch;
      next.absorb(batch);
      for (const [k, e] of batch.entries) {
        e.row.fresh = false;
        const newer = next.entries.get(k);
        if (newer) {
          add(newer, e.item);
          if (e.more) for (const item of e.more) add(newer, item);
        } else {
          next.entries.set(k, e);
        }
      }
      if (!this.closed && !freshTaken) await this.backoff.wait();
    } finally {
      this.inFlightRows = 0;
      this.writing = false;
      if (this.batch.entries.size > 0 && !this.closed) this.kick();
      else for (const f of this.idle.splice(0)) f();
    }
  }

  /**
   * On stop: goes on writing what is queued until `deadline` (epoch ms), then
   * gives up (no retry on a database that does not answer). Resolves with the
   * number of outcomes that could not be recorded: they are not acknowledged,
   * so the next start replays them from the slot or the table.
   */
  async close(deadline: number): Promise<number> {
    this.closeAt = deadline;
    const left = deadline - Date.now();
    if (left > 0) await Promise.race([this.drain(), new Promise((r) => setTimeout(r, left).unref())]);
    this.closed = true;
    this.backoff.interrupt();
    return this.batch.entries.size + this.inFlightRows;
  }

  /** Resolves once every outcome reported before this call is committed (later ones need not be). */
  committed(): Promise<void> {
    if (this.committedUpTo >= this.reported) return Promise.resolve();
    return new Promise((resolve) => this.barriers.push({ upTo: this.reported, resolve }));
  }

  /** Resolves when everything recorded so far is committed: true, or false after `timeoutMs`. */
  drain(timeoutMs = Infinity): Promise<boolean> {
    if (this.batch.entries.size === 0 && !this.writing) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = Number.isFinite(timeoutMs) ? setTimeout(() => resolve(false), timeoutMs).unref() : undefined;
      this.idle.push(() => { clearTimeout(timer); resolve(true); });
      this.kick();
    });
  }
}
