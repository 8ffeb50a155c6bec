import { Backoff } from '../backoff.ts';
import type { Db } from '../db/connect.ts';
import { recordDeliveries } from '../db/deliveries.ts';
import { oneLine } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import type { Item } from './item.ts';
import type { DeliveryState as AnyDeliveryState } from '../db/delivery-states.ts';

/** The states an http handler records (src/db/delivery-states.ts has every state; DISPATCHED is a dispatcher's). */
export type DeliveryState = Exclude<AnyDeliveryState, 'DISPATCHED'>;

interface Row {
  i_event: number; handler: string; state: DeliveryState; event_type: string; order_key: string;
  i_account: number | null; commit_lsn: string | null; attempts: number; urls_done: number;
  last_http_status: number | null; last_error: string | null;
  // times as epoch milliseconds: cheaper to build and encode than ISO strings
  next_attempt_at: number | null; committed_at: number | null; first_attempt_at: number | null;
  last_attempt_at: number | null; finished_at: number | null;
  n?: number;
}

export interface Outcome {
  readonly state: DeliveryState;
  readonly httpStatus?: number | null;
  readonly error?: string | null;
  readonly at?: Date;
}

/**
 * The record stage: writes delivery outcomes in batches to
 * espf.event_deliveries (espf.record_deliveries). While one batch is being
 * written the next one gathers, so recording never becomes the bottleneck.
 * Once a batch commits, every item in it is `persisted` and is reported to
 * `durable` (the acknowledge stage). A failed write is retried with the next
 * batch (a newer record of the same delivery replaces an older one).
 */
export class ResultsWriter {
  private queue = new Map<string, { row: Row; items: Item[] }>();
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

  constructor(
    private readonly db: Db,
    private readonly instance: string,
    private readonly log: Logger,
    /** Called with the items of each committed batch. */
    private readonly durable: (items: readonly Item[]) => void = () => undefined,
    private readonly onError: (err: unknown) => void = () => undefined,
  ) {}

  get queued(): number { return this.queue.size; }

  record(item: Item, outcome: Outcome): void {
    this.reported++;
    const at = outcome.at ? outcome.at.getTime() : Date.now();
    const attempted = outcome.state !== 'PENDING';
    const row: Row = {
      i_event: item.event.i_event,
      handler: item.handler,
      state: outcome.state,
      event_type: item.event.event_type,
      order_key: item.orderKey,
      i_account: item.iAccount,
      commit_lsn: item.commitLsn,
      attempts: item.attempts,
      urls_done: item.urlsDone,
      last_http_status: outcome.httpStatus ?? null,
      last_error: outcome.error ?? null,
      next_attempt_at: outcome.state === 'RETRY' && item.nextAttemptAt ? item.nextAttemptAt.getTime() : null,
      committed_at: item.committedAt ? item.committedAt.getTime() : null,
      first_attempt_at: item.firstAttemptAt ? item.firstAttemptAt.getTime() : null,
      last_attempt_at: attempted ? at : null,
      finished_at: outcome.state === 'DELIVERED' || outcome.state === 'FAILED' || outcome.state === 'SUPERSEDED' ? at : null,
    };
    const key = `${row.i_event}\u0000${row.handler}`;
    const prior = this.queue.get(key);
    if (prior) {
      // A PENDING record never replaces an outcome already queued for the same delivery.
      if (!(row.state === 'PENDING' && prior.row.state !== 'PENDING')) prior.row = row;
      if (!prior.items.includes(item)) prior.items.push(item);
    } else {
      this.queue.set(key, { row, items: [item] });
    }
    this.kick();
  }

  private kick(): void {
    if (this.writing || this.queue.size === 0 || this.closed) return;
    this.writing = true;
    setImmediate(() => void this.write());
  }

  private async write(): Promise<void> {
    const batch = this.queue;
    this.queue = new Map();
    const rows: Row[] = [];
    for (const b of batch.values()) {
      b.row.n = rows.length;
      rows.push(b.row);
    }
    this.inFlightRows = rows.length;
    const upTo = this.reported; // the batch holds every outcome reported so far (a failed batch is put back whole)
    try {
      await recordDeliveries(this.db, this.instance, JSON.stringify(rows));
      this.committedUpTo = upTo;
      if (this.barriers.length) this.barriers = this.barriers.filter((b) => { if (b.upTo > upTo) return true; b.resolve(); return false; });
      this.batches++;
      this.rows += rows.length;
      this.backoff.succeeded();
      const items: Item[] = [];
      for (const [k, b] of batch) {
        const again = this.queue.get(k);
        for (const item of b.items) {
          if (again?.items.includes(item)) continue; // a newer outcome of it is still to be written
          item.persisted = true;
          items.push(item);
        }
      }
      this.durable(items);
    } catch (err) {
      this.onError(err);
      if (Date.now() >= this.closeAt) this.closed = true;
      if (!this.closed) this.log.warn({ err: oneLine(err), rows: rows.length, retryInMs: this.backoff.nextMs }, 'recording outcomes failed; will retry');
      // Put the batch back under anything newer that arrived meanwhile.
      for (const [k, b] of batch) {
        const newer = this.queue.get(k);
        if (newer) { for (const item of b.items) if (!newer.items.includes(item)) newer.items.push(item); }
        else this.queue.set(k, b);
      }
      if (!this.closed) await this.backoff.wait();
    } finally {
      this.inFlightRows = 0;
      this.writing = false;
      if (this.queue.size > 0 && !this.closed) this.kick();
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
    return this.queue.size + this.inFlightRows;
  }

  /** Resolves once every outcome reported before this call is committed (later ones need not be). */
  committed(): Promise<void> {
    if (this.committedUpTo >= this.reported) return Promise.resolve();
    return new Promise((resolve) => this.barriers.push({ upTo: this.reported, resolve }));
  }

  /** Resolves when everything recorded so far is committed: true, or false after `timeoutMs`. */
  drain(timeoutMs = Infinity): Promise<boolean> {
    if (this.queue.size === 0 && !this.writing) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = Number.isFinite(timeoutMs) ? setTimeout(() => resolve(false), timeoutMs).unref() : undefined;
      this.idle.push(() => { clearTimeout(timer); resolve(true); });
      this.kick();
    });
  }
}
