import type { ConfigSnapshot, HandlerConfig } from '../config/snapshot.ts';
import type { Db } from '../db/connect.ts';
import { recordedDeliveries } from '../db/deliveries.ts';
import { accountOf, orderKey, type Item } from '../delivery/item.ts';
import { formatLsn } from '../stream/lsn.ts';
import type { StreamTransaction } from '../stream/replication.ts';
import type { Acknowledger, Admission } from './acknowledge.ts';

export interface RouterDeps {
  readonly db: Db;
  readonly config: () => ConfigSnapshot;
  readonly ack: Acknowledger;
  /** The deliver stage. */
  readonly deliver: (h: HandlerConfig, item: Item) => void;
  /** A transaction is admitted (a metric). */
  readonly captured?: (tx: StreamTransaction) => void;
}

/**
 * The route stage: each committed transaction from the stream becomes one
 * item per (event, enabled subscribed handler of this instance), handed to
 * the deliver stage and held by the acknowledge stage until durable. A
 * transaction replayed after a restart skips the deliveries already recorded.
 * The promise it returns holds the stream while too much is not yet durable.
 */
export class Router {
  private stopped = false;

  constructor(private readonly deps: RouterDeps) {}

  onTransaction(tx: StreamTransaction): Promise<void> | undefined {
    if (this.stopped) return new Promise(() => undefined); // hold the stream: nothing new after stop
    const { ack } = this.deps;
    const admitted = ack.admit(tx.endLsn);
    if (!admitted) return undefined;
    this.deps.captured?.(tx);
    if (!admitted.replay || tx.events.length === 0) return this.handOut(tx, admitted, undefined);
    return recordedDeliveries(this.deps.db, tx.events.map((e) => e.i_event)).then(
      (skip) => this.handOut(tx, admitted, skip),
      (err: unknown) => {
        ack.retract(admitted); // the stream reconnects and brings this transaction again
        throw err;
      },
    );
  }

  private handOut(tx: StreamTransaction, admitted: Admission, skip: Set<string> | undefined): Promise<void> | undefined {
    const { ack, deliver } = this.deps;
    const config = this.deps.config();
    const commitLsn = formatLsn(tx.endLsn);
    for (const e of tx.events) {
      for (const h of config.handlersFor(e.event_type)) {
        if (skip?.has(`${e.i_event}:${h.name}`)) continue;
        const item: Item = {
          event: e, handler: h.name, orderKey: orderKey(e), iAccount: accountOf(e),
          commitLsn, committedAt: tx.commitTime,
          attempts: 0, urlsDone: 0, firstAttemptAt: null, nextAttemptAt: null, persisted: false,
        };
        ack.hold(admitted, item);
        deliver(h, item);
      }
    }
    ack.close(admitted);
    return ack.room();
  }

  stop(): void {
    this.stopped = true;
  }
}
