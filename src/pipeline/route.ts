import type { ConfigSnapshot, HandlerConfig } from '../config/snapshot.ts';
import type { Db } from '../db/connect.ts';
import { recordedDeliveries } from '../db/deliveries.ts';
import { accountOf, orderKey, type Item } from '../delivery/item.ts';
import { formatLsn } from '../stream/lsn.ts';
import type { StreamEvent, StreamPart } from '../stream/replication.ts';
import type { Acknowledger, Admission } from './acknowledge.ts';

export interface RouterDeps {
  readonly db: Db;
  readonly config: () => ConfigSnapshot;
  /** A configuration change the stream brought (src/config/watch.ts `apply`): in force before the events after it. */
  readonly configure: (content: Uint8Array) => void;
  readonly ack: Acknowledger;
  /** The deliver stage. */
  readonly deliver: (h: HandlerConfig, item: Item) => void;
  /** Events read from the stream, each once (a metric). */
  readonly captured?: (events: readonly StreamEvent[]) => void;
}

/**
 * The route stage: each part of a committed transaction from the stream
 * becomes one item per (event, enabled subscribed handler of this instance;
 * for an event a targeted backfill wrote, its target and the dispatchers only:
 * `targets`), handed to the deliver stage and held by the acknowledge stage until
 * durable. A transaction replayed after a restart skips the deliveries
 * already recorded; one the stream brings again after a reconnect in its
 * middle skips the events handed out before. The promise it returns holds
 * the stream while too much is not yet durable, also between two parts of
 * one transaction. A configuration change in the stream is put in force
 * (and the deliver stage synced to it) before the events after it are
 * routed: each event follows the configuration of its commit position.
 */
export class Router {
  private stopped = false;

  constructor(private readonly deps: RouterDeps) {}

  onPart(part: StreamPart): Promise<void> | undefined {
    if (this.stopped) return new Promise(() => undefined); // hold the stream: nothing new after stop
    if (part.config) this.deps.configure(part.config);
    const admitted = this.deps.ack.admit(part.tx.commitLsn);
    if (!admitted) return undefined;
    const skip = admitted.handedOut - part.offset;
    const events = skip <= 0 ? part.events : part.events.slice(skip);
    if (events.length === 0) return this.partDone(part, admitted);
    this.deps.captured?.(events);
    if (!admitted.replay) {
      this.handOut(part, events, admitted, undefined);
      return this.partDone(part, admitted);
    }
    // A failed lookup hands out nothing of this part: the stream reconnects and brings it again.
    return recordedDeliveries(this.deps.db, events.map((e) => e.i_event)).then((recorded) => {
      this.handOut(part, events, admitted, recorded);
      return this.partDone(part, admitted);
    });
  }

  private handOut(part: StreamPart, events: readonly StreamEvent[], admitted: Admission, recorded: Set<string> | undefined): void {
    const { ack, deliver } = this.deps;
    const config = this.deps.config();
    const commitLsn = formatLsn(part.tx.commitLsn);
    for (const e of events) {
      for (const h of config.handlersFor(e.event_type)) {
        if (!targets(e, h)) continue;
        if (recorded?.has(`${e.i_event}:${h.name}`)) continue;
        const item: Item = {
          event: e, handler: h.name, orderKey: orderKey(e), iAccount: accountOf(e),
          commitLsn, committedAt: part.tx.commitTime, resumed: null, fresh: true,
        };
        ack.hold(admitted, item);
        deliver(h, item);
      }
    }
  }

  private partDone(part: StreamPart, admitted: Admission): Promise<void> | undefined {
    const { ack } = this.deps;
    ack.handedOut(admitted, part.offset + part.events.length);
    if (part.endLsn !== null) ack.close(admitted, part.endLsn);
    return ack.room();
  }

  stop(): void {
    this.stopped = true;
  }
}

/**
 * Whether event `e` goes to handler `h` (subscribed to its type): an event
 * without a target goes to every one; one a backfill wrote with `--handler`
 * (espf.events.target_handler) to that handler, and to dispatchers, whose events
 * keep the target (sql/210_dispatch.sql). The catch-up applies the same rule
 * (espf.event_targets, sql/450_catch_up.sql).
 */
export function targets(e: StreamEvent, h: HandlerConfig): boolean {
  return e.target_handler == null || e.target_handler === h.name || h.kind === 'dispatcher';
}
