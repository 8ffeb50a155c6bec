import type { Db } from '../db/connect.ts';
import { waitingSummary } from '../db/deliveries.ts';
import { maintenanceSettings, purgeBatch, reclaimBatch, slotLags, type ReclaimedRows, type SlotLag } from '../db/maintenance.ts';
import type { Logger } from '../log/logger.ts';
import { bytes } from '../notify/digest.ts';

export interface TaskContext {
  readonly db: Db;
  readonly log: Logger;
  readonly instance: string;
  /** True once stop() was called: long tasks end between batches. */
  readonly stopping: () => boolean;
}

export interface PurgeResult {
  readonly cutoff: string;       // rows finished (events created) before this were purged
  readonly deliveries: number;
  readonly events: number;
  readonly notices: number;
  readonly batches: number;
  readonly complete: boolean;    // false when stopped before everything was purged
}

export type { ReclaimedRows, SlotLag };

/**
 * Purge: DELIVERED, FAILED, DISPATCHED, SUPERSEDED and SKIPPED deliveries finished before now() -
 * retention, then events created before it none of whose deliveries waits or
 * finished later, then old failure notices. Each batch of purge_batch rows is
 * one short DELETE by ctid (rows locked by someone else are skipped).
 */
export async function purge(ctx: TaskContext): Promise<PurgeResult> {
  const { db, log } = ctx;
  const s = await maintenanceSettings(db);
  let batches = 0;
  const run = async (fn: 'purge_deliveries' | 'purge_events' | 'purge_failure_notices'): Promise<number> => {
    let total = 0;
    for (;;) {
      if (ctx.stopping()) return total;
      const n = await purgeBatch(db, fn, s.cutoff, s.purge_batch);
      batches++;
      total += n;
      if (n < s.purge_batch) return total;
    }
  };
  const deliveries = await run('purge_deliveries');
  const events = await run('purge_events');
  const notices = await run('purge_failure_notices');
  const result = { cutoff: s.cutoff.toISOString(), deliveries, events, notices, batches, complete: !ctx.stopping() };
  if (deliveries + events + notices > 0) log.info({ task: 'purge', ...result }, `purged ${deliveries} deliveries and ${events} events older than the retention`);
  return result;
}

/**
 * Reclaim: waiting (PENDING, RETRY) deliveries recorded by an instance that no
 * longer serves their handler (espf.handlers.instance changed, e.g. after that
 * instance died) are given to the instance that serves it now.
 */
export async function reclaim(ctx: TaskContext): Promise<{ readonly moved: readonly ReclaimedRows[]; readonly total: number }> {
  const { db, log } = ctx;
  const s = await maintenanceSettings(db);
  const byKey = new Map<string, { handler: string; from_instance: string; to_instance: string; deliveries: number }>();
  for (;;) {
    if (ctx.stopping()) break;
    const rows = await reclaimBatch(db, s.purge_batch);
    let n = 0;
    for (const r of rows) {
      n += r.deliveries;
      const key = `${r.handler}\u0000${r.from_instance}\u0000${r.to_instance}`;
      const m = byKey.get(key);
      if (m) m.deliveries += r.deliveries; else byKey.set(key, { ...r });
    }
    if (n < s.purge_batch) break;
  }
  const moved = [...byKey.values()];
  for (const m of moved) {
    log.warn({ task: 'reclaim', ...m },
      `${m.deliveries} waiting deliveries of handler ${m.handler} moved from instance ${m.from_instance} to ${m.to_instance}, which now serves it and takes them (requeued)`);
  }
  return { moved, total: moved.reduce((a, m) => a + m.deliveries, 0) };
}

export interface SlotLagResult {
  readonly warn_bytes: number;
  readonly slots: readonly SlotLag[];
  readonly lagging: readonly string[];     // slots past warn_bytes
  readonly waiting: number;                // deliveries recorded PENDING or RETRY
  readonly oldest_waiting: string | null;  // commit time of the oldest of them
}

/**
 * Slot lag: WAL written since the position each espf_% slot's consumer confirmed
 * (pg_current_wal_lsn() - confirmed_flush_lsn). Past slot_lag_warn_bytes: a
 * warning here, and a section of the next failure e-mail. Also the recorded backlog.
 */
export async function measureSlotLag(ctx: TaskContext): Promise<SlotLagResult> {
  const { db, log } = ctx;
  const s = await maintenanceSettings(db);
  const slots = await slotLags(db);
  const warn = Number(s.slot_lag_warn_bytes);
  const lagging = slots.filter((x) => x.lag_bytes > warn);
  for (const x of lagging) {
    log.warn({ task: 'slot_lag', slot: x.slot_name, lag_bytes: x.lag_bytes, active: x.active, warn_bytes: warn, wal_status: x.wal_status },
      `replication slot ${x.slot_name} is ${bytes(x.lag_bytes)} behind (past slot_lag_warn_bytes ${bytes(warn)})` +
      `${x.active ? '' : '; nothing is streaming from it: is espf run for this instance running?'}`);
  }
  const w = await waitingSummary(db);
  return {
    warn_bytes: warn, slots, lagging: lagging.map((x) => x.slot_name),
    waiting: w.waiting, oldest_waiting: w.oldest ? new Date(w.oldest).toISOString() : null,
  };
}
