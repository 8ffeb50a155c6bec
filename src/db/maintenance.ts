// Maintenance and failure e-mails: espf.maintenance, espf.maintenance_runs,
// espf.notifications and the functions of sql/600_maintenance.sql.
import { sql } from '@databases/pg';
import type { Db } from './connect.ts';

export type MaintenanceTask = 'purge' | 'reclaim' | 'slot_lag' | 'digest';

export interface MaintenanceSettings { cutoff: Date; purge_batch: number; slot_lag_warn_bytes: number }

export async function maintenanceSettings(db: Db): Promise<MaintenanceSettings> {
  const [s] = await db.query(sql`SELECT now() - retention AS cutoff, purge_batch, slot_lag_warn_bytes FROM espf.maintenance`);
  if (!s) throw new Error('espf.maintenance has no row (run espf migrate)');
  return s as MaintenanceSettings;
}

/** One purge batch (one short DELETE); the rows it removed. */
export async function purgeBatch(db: Db, fn: 'purge_deliveries' | 'purge_events' | 'purge_failure_notices', cutoff: Date, batch: number): Promise<number> {
  const [r] = await db.query(sql`SELECT ${sql.ident('espf', fn)}(${cutoff}, ${batch}) AS n`);
  return Number(r?.n ?? 0);
}

export interface ReclaimedRows {
  readonly handler: string;
  readonly from_instance: string;
  readonly to_instance: string;
  readonly deliveries: number;
}

/** One reclaim batch: waiting deliveries of instances that no longer serve their handler, moved. */
export function reclaimBatch(db: Db, batch: number): Promise<ReclaimedRows[]> {
  return db.query(sql`SELECT * FROM espf.reclaim_deliveries(${batch})`);
}

export interface SlotLag {
  readonly slot_name: string;
  readonly active: boolean;
  readonly lag_bytes: number;
  readonly retained_bytes: number | null;
  readonly wal_status: string | null;
}

/** Every espf_% slot with its lag (espf.slot_lag()), numbers as numbers; only those past `overBytes` when given. */
export async function slotLags(db: Db, overBytes?: number): Promise<SlotLag[]> {
  const rows: SlotLag[] = overBytes === undefined
    ? await db.query(sql`SELECT * FROM espf.slot_lag()`)
    : await db.query(sql`SELECT * FROM espf.slot_lag() WHERE lag_bytes > ${overBytes}`);
  return rows.map((r) => ({ ...r, lag_bytes: Number(r.lag_bytes), retained_bytes: r.retained_bytes == null ? null : Number(r.retained_bytes) }));
}

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

export interface NotificationSettings {
  enabled: boolean; smtp_url: string | null; mail_from: string | null; recipients: string[];
  unreachable_after: string; since: Date; slot_lag_warn_bytes: number;
}

/** The e-mail settings, and since when failures are unreported (the last digest, an hour of overlap). */
export async function notificationSettings(db: Db): Promise<NotificationSettings | undefined> {
  const [s]: NotificationSettings[] = await db.query(sql`
    SELECT n.enabled, n.smtp_url, n.mail_from, n.recipients, n.unreachable_after::text AS unreachable_after,
           coalesce(r.last_notified_at, now() - n.digest_interval) - interval '1 hour' AS since,
           m.slot_lag_warn_bytes
      FROM espf.notifications n, espf.maintenance m, espf.maintenance_runs r
     WHERE r.task = 'digest'`);
  return s;
}

export interface FailedDelivery {
  readonly i_event: number; readonly handler: string; readonly event_type: string; readonly i_account: number | null;
  readonly attempts: number; readonly last_http_status: number | null; readonly last_error: string | null; readonly finished_at: Date;
}
export interface UnreachableTarget {
  readonly handler: string; readonly instance: string | null; readonly url: string[] | null; readonly failing: number;
  readonly failing_since: Date; readonly last_http_status: number | null; readonly last_error: string | null;
  /** Set for a target the circuit breaker holds down (espf.target_states): probes sent since. */
  readonly probes?: number;
  /** Of a target held down: the environment whose settings it belongs to (espf.http_handler_envs); null: the default row. */
  readonly i_env?: number | null;
}

export function unreportedFailures(db: Db, since: Date, max: number): Promise<FailedDelivery[]> {
  return db.query(sql`SELECT * FROM espf.unreported_failures(${since}, ${max})`);
}

export function unreachableTargets(db: Db, after: string): Promise<UnreachableTarget[]> {
  return db.query(sql`SELECT * FROM espf.unreachable_targets(${after}::interval)`);
}

/** Target URLs the circuit breaker has held down for longer than `after` (espf.target_states). */
export function downTargets(db: Db, after: string): Promise<UnreachableTarget[]> {
  return db.query(sql`SELECT * FROM espf.down_targets(${after}::interval)`);
}

/** Marks failures as sent in an e-mail. */
export async function noteFailuresNotified(db: Db, failed: readonly FailedDelivery[]): Promise<void> {
  await db.query(sql`SELECT espf.note_failures_notified(
    ${failed.map((f) => f.i_event)}::bigint[], ${failed.map((f) => f.handler)}::text[], ${failed.map((f) => f.finished_at)}::timestamptz[])`);
}
