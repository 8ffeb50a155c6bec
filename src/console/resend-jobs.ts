import { randomBytes } from 'node:crypto';
import { resend, type ResendSelection } from '../cli/resend-command.ts';
import type { Db } from '../db/connect.ts';
import { oneLine } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import { HttpRefusal } from '../run/http-helpers.ts';
import { audit, type DeliveryFilter } from './store.ts';

/** A resend of all deliveries matching a filter, started in the console; its progress is kept in memory. */
export interface Job {
  readonly id: string;
  readonly user: string;
  readonly filter: DeliveryFilter;
  readonly back: string;
  /** The count the user confirmed, and the most this job re-queues. */
  readonly confirmed: number;
  readonly cap: number;
  total: number;
  done: number;
  requeued: number;
  finished: boolean;
  cancelledBy: string | null;
  error: string | null;
}

const KEPT = 20;
const BATCH = 1000;

/** The selection of `espf resend` for a filter of the Deliveries page (created_at is the page's time). */
export function selectionOf(f: DeliveryFilter): ResendSelection {
  return {
    events: null, account: null, handler: f.handler ?? null, status: f.state === 'DELIVERED' || f.state === 'FAILED' ? f.state : null,
    since: null, type: f.type ?? null, createdSince: f.since ?? null, createdUntil: f.until ?? null,
  };
}

/**
 * The console's resend jobs of this instance: one at a time, each runs
 * `resend()` of `espf resend` (src/cli/resend-command.ts) with the page's
 * filter, in batches of 1,000 (one transaction each), stopping at its cap or
 * when cancelled (between two batches). Start, end and cancel are audited.
 */
export class ResendJobs {
  private readonly jobs = new Map<string, Job>();
  private current: { job: Job; abort: AbortController } | null = null;

  constructor(private readonly db: Db, private readonly log: Logger) {}

  get(id: string): Job | undefined {
    return this.jobs.get(id);
  }

  /** The job running on this instance, if any. */
  running(): Job | null {
    return this.current?.job ?? null;
  }

  /** Starts a job (audited first); refused (409) while another runs on this instance. */
  async start(user: string, filter: DeliveryFilter, back: string, confirmed: number, cap: number): Promise<Job> {
    const busy = this.running();
    if (busy) throw new HttpRefusal(409, `refused: a resend of all matching deliveries is running on this instance (started by ${busy.user}, /console/jobs/${busy.id}): wait for it or cancel it`);
    const job: Job = {
      id: randomBytes(8).toString('hex'), user, filter, back, confirmed, cap,
      total: confirmed, done: 0, requeued: 0, finished: false, cancelledBy: null, error: null,
    };
    const abort = new AbortController();
    this.current = { job, abort };
    try {
      await audit(this.db, user, 'resend matching', filter.handler ?? '(every handler)', { filter }, { matching: confirmed, cap });
    } catch (err) {
      this.current = null;
      throw err;
    }
    this.jobs.set(job.id, job);
    while (this.jobs.size > KEPT) this.jobs.delete(this.jobs.keys().next().value!);
    void this.run(job, abort.signal);
    return job;
  }

  /** Stops the running job after its current batch; false when `id` is not running. */
  cancel(id: string, user: string): boolean {
    if (!this.current || this.current.job.id !== id) return false;
    this.current.job.cancelledBy = user;
    this.current.abort.abort();
    return true;
  }

  private async run(job: Job, signal: AbortSignal): Promise<void> {
    let outcome = 'resend matching failed';
    try {
      const r = await resend(this.db, selectionOf(job.filter), {
        batch: BATCH, dryRun: false, maxRows: job.cap, signal,
        progress: (done, total) => { job.done = done; job.requeued = done; job.total = total; },
      });
      job.total = r.selected;
      job.requeued = job.done = r.requeued;
      outcome = r.stopped === 'cancelled' ? 'resend matching cancelled' : 'resend matching done';
      this.log.info({ user: job.user, filter: job.filter, requeued: job.requeued, stopped: r.stopped }, 'console: resend of all matching deliveries ended');
    } catch (err) {
      job.error = oneLine(err);
      this.log.error({ err: oneLine(err) }, 'console: resend job failed');
    } finally {
      job.finished = true;
      if (this.current?.job === job) this.current = null;
      await audit(this.db, job.cancelledBy ?? job.user, outcome, job.filter.handler ?? '(every handler)', { filter: job.filter },
        { requeued: job.requeued, error: job.error }).catch((err: unknown) => this.log.error({ err: oneLine(err) }, 'console: resend job not audited'));
    }
  }
}
