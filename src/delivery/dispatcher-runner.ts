import { sql } from '@databases/pg';
import type { Db } from '../db/connect.ts';
import { oneLine } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import type { Item } from './item.ts';

const MAX_BATCH = 1000;

/**
 * Runs one dispatcher: batches of source events go to espf.dispatch() (one
 * transaction per batch), which inserts the events the dispatcher's views
 * produce. They come back through the stream like any other event.
 */
export class DispatcherRunner {
  private queue: Item[] = [];
  private running = false;
  private retryMs = 100;
  private drained: (() => void)[] = [];
  produced = 0;

  constructor(
    readonly name: string,
    private readonly db: Db,
    private readonly instance: string,
    private readonly log: Logger,
    private readonly settled: (item: Item) => void,
    private readonly observe?: (handler: string, sources: number, produced: number) => void,
    private readonly onError: (err: unknown) => void = () => undefined,
  ) {}

  get size(): number { return this.queue.length; }

  enqueue(item: Item): void {
    this.queue.push(item);
    this.kick();
  }

  private kick(): void {
    if (this.running || this.queue.length === 0) return;
    this.running = true;
    setImmediate(() => void this.runBatch());
  }

  private async runBatch(): Promise<void> {
    const batch = this.queue.slice(0, MAX_BATCH);
    try {
      const [row] = await this.db.query(sql`
        SELECT espf.dispatch(${this.name}, ${batch.map((i) => i.event.i_event)}::bigint[], ${this.instance}) AS produced`);
      this.produced += Number(row?.produced ?? 0);
      this.observe?.(this.name, batch.length, Number(row?.produced ?? 0));
      this.queue.splice(0, batch.length);
      this.retryMs = 100;
      for (const item of batch) this.settled(item);
    } catch (err) {
      this.onError(err);
      this.log.warn({ err: oneLine(err), handler: this.name, retryInMs: this.retryMs }, 'dispatch failed; will retry');
      await new Promise((r) => setTimeout(r, this.retryMs));
      this.retryMs = Math.min(5000, this.retryMs * 2);
    } finally {
      this.running = false;
    }
    if (this.queue.length > 0) this.kick();
    else for (const f of this.drained.splice(0)) f();
  }

  /** Resolves when every queued source event is dispatched (or after maxWaitMs). */
  async stop(maxWaitMs: number): Promise<void> {
    if (this.queue.length === 0 && !this.running) return;
    await Promise.race([
      new Promise<void>((r) => this.drained.push(r)),
      new Promise<void>((r) => setTimeout(r, maxWaitMs).unref()),
    ]);
  }
}
