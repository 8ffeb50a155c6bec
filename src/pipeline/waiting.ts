import type { Db } from '../db/connect.ts';
import { takeRequeued, waitingDeliveries, type WaitingRow } from '../db/deliveries.ts';
import { accountOf, orderKey, type Item } from '../delivery/item.ts';
import { oneLine } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import { Poller } from '../poller.ts';
import type { StreamEvent } from '../stream/replication.ts';

/**
 * The second way into the deliver stage, beside the stream: deliveries that
 * wait in espf.event_deliveries. At start it resumes what a previous run left
 * PENDING or RETRY; while running it takes, every `pollMs`, the deliveries
 * marked requeued (by espf resend, or by maintenance reclaiming a moved
 * handler's rows). These items are already persisted: they hold no WAL.
 */
export class WaitingDeliveries {
  private readonly poller: Poller;

  constructor(private readonly opts: {
    readonly db: Db;
    readonly log: Logger;
    /** The http handlers this instance serves now. */
    readonly handlers: () => readonly string[];
    readonly deliver: (item: Item) => void;
    readonly onDbError: (err: unknown) => void;
  }) {
    this.poller = new Poller(() => this.takeRequeued(), (err) => {
      opts.onDbError(err);
      opts.log.warn({ err: oneLine(err) }, 'taking requeued deliveries failed; will try again');
    });
  }

  /** Resumes what a previous run left waiting, before anything new. */
  async resume(): Promise<void> {
    const rows = await waitingDeliveries(this.opts.db, this.opts.handlers());
    for (const r of rows) this.opts.deliver(itemFromRow(r));
    if (rows.length) this.opts.log.info({ resumed: rows.length }, 'resumed waiting deliveries');
  }

  start(pollMs: number): void {
    this.poller.start(pollMs);
  }

  private async takeRequeued(): Promise<void> {
    const mine = this.opts.handlers();
    if (mine.length === 0) return;
    const rows = await takeRequeued(this.opts.db, mine);
    for (const r of rows) this.opts.deliver(itemFromRow(r));
    if (rows.length) this.opts.log.info({ requeued: rows.length }, 'took requeued deliveries');
  }

  stop(): void {
    this.poller.stop();
  }
}

function itemFromRow(r: WaitingRow): Item {
  const event: StreamEvent = { i_event: r.i_event, event_type: r.event_type, variables: r.variables, source_i_event: r.source_i_event };
  return {
    event, handler: r.handler, orderKey: orderKey(event), iAccount: accountOf(event),
    commitLsn: r.commit_lsn, committedAt: r.committed_at,
    attempts: r.attempts, urlsDone: r.urls_done, firstAttemptAt: r.first_attempt_at,
    nextAttemptAt: r.state === 'RETRY' ? r.next_attempt_at : null, persisted: true,
  };
}
