import { sql } from '@databases/pg';
import type { Db } from '../db/connect.ts';
import { oneLine } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import { formatLsn } from '../stream/lsn.ts';
import type { Item } from './item.ts';

export type DeliveryState = 'PENDING' | 'RETRY' | 'DELIVERED' | 'FAILED' | 'SUPERSEDED';

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
 * Writes delivery outcomes in batches: while one batch is being written the
 * next one gathers, so recording never becomes the bottleneck. Each record's
 * callback runs once its row is committed; a failed write is retried with the
 * next batch (a newer record of the same delivery replaces an older one).
 */
export class ResultsWriter {
  private queue = new Map<string, { row: Row; done: (() => void)[] }>();
  private writing = false;
  private idle: (() => void)[] = [];
  private retryMs = 100;
  batches = 0;
  rows = 0;

  constructor(
    private readonly db: Db,
    private readonly instance: string,
    private readonly log: Logger,
    private readonly onError: (err: unknown) => void = () => undefined,
  ) {}

  get queued(): number { return this.queue.size; }

  record(item: Item, outcome: Outcome, done?: () => void): void {
    const at = outcome.at ? outcome.at.getTime() : Date.now();
    const attempted = outcome.state !== 'PENDING';
    const row: Row = {
      i_event: item.event.i_event,
      handler: item.handler,
      state: outcome.state,
      event_type: item.event.event_type,
      order_key: item.orderKey,
      i_account: item.iAccount,
      commit_lsn: item.commitLsn == null ? null : formatLsn(item.commitLsn),
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
      if (done) prior.done.push(done);
    } else {
      this.queue.set(key, { row, done: done ? [done] : [] });
    }
    this.kick();
  }

  private kick(): void {
    if (this.writing || this.queue.size === 0) return;
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
    try {
      await this.db.query(sql`SELECT espf.record_deliveries(${this.instance}, ${JSON.stringify(rows)}::jsonb)`);
      this.batches++;
      this.rows += rows.length;
      this.retryMs = 100;
      for (const b of batch.values()) for (const d of b.done) d();
    } catch (err) {
      this.onError(err);
      this.log.warn({ err: oneLine(err), rows: rows.length, retryInMs: this.retryMs }, 'recording outcomes failed; will retry');
      // Put the batch back under anything newer that arrived meanwhile.
      for (const [k, b] of batch) {
        const newer = this.queue.get(k);
        if (newer) newer.done.unshift(...b.done);
        else this.queue.set(k, b);
      }
      await new Promise((r) => setTimeout(r, this.retryMs));
      this.retryMs = Math.min(5000, this.retryMs * 2);
    } finally {
      this.writing = false;
      if (this.queue.size > 0) this.kick();
      else for (const f of this.idle.splice(0)) f();
    }
  }

  /** Resolves when everything recorded so far is committed. */
  drain(): Promise<void> {
    if (this.queue.size === 0 && !this.writing) return Promise.resolve();
    return new Promise((resolve) => {
      this.idle.push(resolve);
      this.kick();
    });
  }
}
