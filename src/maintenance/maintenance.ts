import cron from 'node-cron';
import type { Db } from '../db/connect.ts';
import { oneLine } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import { runDigest, type DigestResult } from '../notify/digest.ts';
import { claimTask, recordResult, type MaintenanceTask } from '../db/maintenance.ts';
import { measureSlotLag, purge, reclaim, type PurgeResult, type SlotLagResult, type TaskContext } from './tasks.ts';

export interface MaintenanceOptions {
  readonly db: Db;
  readonly log: Logger;
  readonly instance: string;
  /** This instance's replication slot (espf_<instance>), named in log lines. */
  readonly slot?: string;
}

/** What one pass did; a task is absent when its gate was closed (too soon, or another instance ran it). */
export interface MaintenanceReport {
  reclaim?: Awaited<ReturnType<typeof reclaim>>;
  purge?: PurgeResult;
  slot_lag?: SlotLagResult;
  digest?: DigestResult;
  readonly errors: { task: MaintenanceTask; error: string }[];
}

/** How often an instance looks at the gates; how often a task runs is set in rows. */
const TICK = '*/15 * * * * *';

/**
 * One maintenance pass: each task whose gate opens for this instance runs
 * (reclaim, purge, slot lag every espf.maintenance.pass_interval; the failure
 * digest every espf.notifications.digest_interval). Errors are logged and
 * reported, never thrown.
 */
export async function runMaintenancePass(opts: MaintenanceOptions, stopping: () => boolean = () => false): Promise<MaintenanceReport> {
  const { db, log, instance } = opts;
  const ctx: TaskContext = { db, log, instance, stopping };
  const report: MaintenanceReport = { errors: [] };
  const tasks: [Exclude<MaintenanceTask, 'digest'>, () => Promise<unknown>][] = [
    ['reclaim', async () => { report.reclaim = await reclaim(ctx); return report.reclaim; }],
    ['purge', async () => { report.purge = await purge(ctx); return report.purge; }],
    ['slot_lag', async () => { report.slot_lag = await measureSlotLag(ctx); return report.slot_lag; }],
  ];
  for (const [task, fn] of tasks) {
    if (stopping()) return report;
    try {
      if (!(await claimTask(db, task, instance))) continue;
      const result = await fn();
      await recordResult(db, task, result);
    } catch (err) {
      report.errors.push({ task, error: oneLine(err) });
      log.warn({ task, instance, slot: opts.slot, err: oneLine(err) }, `maintenance task ${task} failed; it runs again at the next pass`);
    }
  }
  if (stopping()) return report;
  try {
    report.digest = await runDigest({ db, log, instance });
  } catch (err) {
    report.errors.push({ task: 'digest', error: oneLine(err) });
    log.warn({ task: 'digest', instance, err: oneLine(err) }, 'failure digest failed; it runs again at the next pass');
  }
  return report;
}

export interface Maintenance {
  /** Runs a pass now; returns undefined at once when one is in progress (or after stop()). */
  runNow(): Promise<MaintenanceReport | undefined>;
  /** No more passes; waits for the pass in progress (long tasks end between batches). */
  stop(): Promise<void>;
}

/** Schedules maintenance passes with node-cron (every 15 s; the rows decide what runs). */
export function startMaintenance(opts: MaintenanceOptions): Maintenance {
  const { log } = opts;
  let stopping = false;
  let current: Promise<MaintenanceReport> | undefined;
  const pass = async (): Promise<MaintenanceReport | undefined> => {
    if (current) return undefined;   // re-entry guard: a pass is in progress
    if (stopping) return undefined;
    current = runMaintenancePass(opts, () => stopping);
    try {
      return await current;
    } finally {
      current = undefined;
    }
  };
  const task = cron.schedule(TICK, async () => { await pass(); }, {
    name: `espf-maintenance-${opts.instance}`,
    noOverlap: true,
    logger: {
      info: (m) => log.debug({ cron: true }, m),
      debug: (m) => log.debug({ cron: true }, String(m)),
      warn: (m) => log.debug({ cron: true }, m),
      error: (m, err) => log.warn({ cron: true, err: err ? oneLine(err) : undefined }, String(m)),
    },
  });
  log.info({ instance: opts.instance }, 'maintenance scheduled (settings in espf.maintenance and espf.notifications)');
  return {
    runNow: pass,
    stop: async () => {
      if (stopping) return;
      stopping = true;
      await task.destroy();
      await current?.catch(() => undefined);
    },
  };
}
