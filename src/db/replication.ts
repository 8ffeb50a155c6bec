// Replication slots and the publication, as the sender and the metrics see
// them. The publication itself is defined in sql/040_publication.sql.
import { sql } from '@databases/pg';
import type { Db } from './connect.ts';

/** The publication espf run streams (sql/040_publication.sql). */
export const PUBLICATION = 'espf_events';

export async function publicationExists(db: Db): Promise<boolean> {
  const [pub] = await db.query(sql`SELECT 1 FROM pg_publication WHERE pubname = ${PUBLICATION}`);
  return pub !== undefined;
}

/** Whether the slot exists, whether it is a failover slot, and whether the server has failover slots (PostgreSQL 17+). */
export async function slotState(db: Db, slot: string): Promise<{ present: boolean; failover: boolean | null; failoverSlots: boolean }> {
  const [s] = await db.query(sql`
    SELECT current_setting('server_version_num')::int >= 170000 AS failover_slots,
           (SELECT (to_jsonb(r) ->> 'failover')::boolean FROM pg_replication_slots r WHERE slot_name = ${slot}) AS failover,
           EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = ${slot}) AS present`);
  return { present: s.present, failover: s.failover, failoverSlots: s.failover_slots };
}

/**
 * Creates a logical slot for pgoutput, a failover slot where the server has
 * them (fails with 42710 if another instance created it first).
 */
export async function createSlot(db: Db, slot: string, failover: boolean): Promise<void> {
  if (failover) await db.query(sql`SELECT pg_create_logical_replication_slot(${slot}, 'pgoutput', false, false, true)`);
  else await db.query(sql`SELECT pg_create_logical_replication_slot(${slot}, 'pgoutput')`);
}

/** A non-transactional message through every slot of the database (a heartbeat). */
export async function emitMessage(db: Db, prefix: string, content: string): Promise<void> {
  await db.query(sql`SELECT pg_logical_emit_message(false, ${prefix}, ${content})`);
}

/** Bytes of WAL between the server's position and what the slot has confirmed; null for no such slot. */
export async function slotLagBytes(db: Db, slot: string): Promise<number | null> {
  const [row] = await db.query(sql`
    SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::float8 AS lag
      FROM pg_replication_slots WHERE slot_name = ${slot}`);
  return row?.lag ?? null;
}
