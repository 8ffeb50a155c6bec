import { sql } from '@databases/pg';
import type { Db } from '../db/connect.ts';

export type MaintenanceTask = 'purge' | 'reclaim' | 'slot_lag' | 'digest';

/**
 * The fleet-wide gate (espf.maintenance_runs): true for exactly one caller per
 * interval across every instance, so two instances never run the same pass.
 */
export async function claimTask(db: Db, task: MaintenanceTask, instance: string): Promise<boolean> {
  const [r] = await db.query(sql`SELECT espf.claim_maintenance(${task}, ${instance}) AS claimed`);
  return r?.claimed === true;
}

/** Stores what a pass did in espf.maintenance_runs.last_result. */
export async function recordResult(db: Db, task: MaintenanceTask, result: unknown): Promise<void> {
  await db.query(sql`SELECT espf.maintenance_done(${task}, ${JSON.stringify(result)}::jsonb)`);
}
