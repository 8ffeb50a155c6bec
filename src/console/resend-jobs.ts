import { randomBytes } from 'node:crypto';
import { resend } from '../cli/resend-command.ts';
import type { Db } from '../db/connect.ts';
import { oneLine } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import { audited, type DeliveryFilter } from './store.ts';

/** A resend of all deliveries matching a filter, started in the console; its progress is kept in memory. */
export interface Job {
  readonly id: string;
  readonly user: string;
  readonly filter: DeliveryFilter;
  readonly back: string;
  total: number;
  done: number;
  requeued: number;
  finished: boolean;
  error: string | null;
}

const KEPT = 100;
const BATCH = 1000;

/**
 * The console's resend jobs of this instance: each runs `resend()` of
 * `espf resend` (src/cli/resend-command.ts) with the page's filter, in
 * batches of 1,000, one transaction each.
 */
export class ResendJobs {
  private readonly jobs = new Map<string, Job>();

  constructor(private readonly db: Db, private readonly log: Logger) {}

  get(id: string): Job | undefined {
    return this.jobs.get(id);
  }

  start(user: string, filter: DeliveryFilter, back: string): Job {
    const job: Job = { id: randomBytes(8).toString('hex'), user, filter, back, total: 0, done: 0, requeued: 0, finished: false, error: null };
    this.jobs.set(job.id, job);
    if (this.jobs.size > KEPT) this.jobs.delete(this.jobs.keys().next().value!);
    void this.run(job);
    return job;
  }

  private async run(job: Job): Promise<void> {
    const f = job.filter;
    try {
      // Only finished deliveries are re-queued: a filter on another state matches none.
      const status = f.state === undefined ? null : f.state;
      if (status !== null && status !== 'DELIVERED' && status !== 'FAILED') return;
      await audited(this.db, job.user, 'resend', f.handler ?? '(every handler)', async () => ({ before: { filter: f }, after: null, result: null }));
      const r = await resend(this.db, {
        events: null, account: null, handler: f.handler ?? null, status, since: null,
        type: f.type ?? null, createdSince: f.since ?? null, createdUntil: f.until ?? null,
      }, {
        batch: BATCH, dryRun: false,
        progress: (done, total) => { job.done = done; job.requeued = done; job.total = total; },
      });
      job.total = r.selected;
      job.requeued = job.done = r.requeued;
      this.log.info({ user: job.user, filter: f, requeued: job.requeued }, 'console: resend of all matching deliveries done');
    } catch (err) {
      job.error = oneLine(err);
      this.log.error({ err: oneLine(err) }, 'console: resend job failed');
    } finally {
      job.finished = true;
    }
  }
}
