import { Backoff } from '../backoff.ts';
import type { Db } from '../db/connect.ts';
import { dispatch } from '../db/deliveries.ts';
import { oneLine } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import type { Item } from './item.ts';
import { completeObserver, type DeliveryObserver } from './observer.ts';

const MAX_BATCH = 1000;

/**
 * The deliver stage of one dispatcher: batches of source events go to
 * espf.dispatch() (one transaction per batch), which records them DISPATCHED
 * and inserts the events the dispatcher's rules (espf.dispatcher_rules,
 * sql/200_dispatchers.sql) produce; those come back through the stream like
 * any other event. A committed batch is reported to `durable` (the
 * acknowledge stage). A rule that fails (its table dropped: `espf rule check`
 * names it) fails the batch, which is retried with backoff.
 */
export class DispatcherRunner {
  private queue: Item[] = [];
  private running = false;
  private readonly backoff = new Backoff();
  private drained: (() => void)[] = [];
  produced = 0;

  constructor(
    readonly name: string,
    private readonly db: Db,
    private readonly instance: string,
    private readonly log: Logger,
    private readonly durable: (items: readonly Item[]) => void,
    private readonly observer: DeliveryObserver = completeObserver(),
    private readonly onError: (err: unknown) => void = () => undefined,
  ) {
    observer.held(name, 0);
  }

  get size(): number { return this.queue.length; }

  enqueue(item: Item): void {
    this.queue.push(item);
    this.observer.held(this.name, this.queue.length);
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
      const produced = await dispatch(this.db, this.name, batch.map((i) => i.event.i_event), this.instance);
      this.produced += produced;
      this.observer.dispatched(this.name, batch.length, produced);
      this.queue.splice(0, batch.length);
      this.observer.held(this.name, this.queue.length);
      this.backoff.succeeded();
      this.durable(batch);
    } catch (err) {
      this.onError(err);
      this.log.warn({ err: oneLine(err), handler: this.name, retryInMs: this.backoff.nextMs }, 'dispatch failed; will retry');
      await this.backoff.wait();
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
