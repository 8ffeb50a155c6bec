// Replication slots and the publication, as the sender, `espf shards` and
// the metrics see them. The publication itself is defined in
// sql/040_publication.sql.
//
// Slot names are per server, not per database: a slot is ours only when it
// was made in this database. `ourSlot` is that rule, the same as the SQL side
// applies (sql/450_catch_up.sql, sql/600_maintenance.sql espf.slot_lag); a
// slot of the same name made in another database is not ours.
import { sql, type Queryable, type SQLQuery } from '@databases/pg';
import type { Db } from './connect.ts';
import { EspfError } from '../errors.ts';

/** The condition on pg_replication_slots (aliased `alias`) that picks our slot of this name. */
function ourSlot(alias: string, slot: string): SQLQuery {
  const a = sql.ident(alias);
  return sql`${a}.slot_name = ${slot} AND ${a}.database = current_database()`;
}

/** The publication espf run streams (sql/040_publication.sql). */
export const PUBLICATION = 'espf_events';

export async function publicationExists(db: Db): Promise<boolean> {
  const [pub] = await db.query(sql`SELECT 1 FROM pg_publication WHERE pubname = ${PUBLICATION}`);
  return pub !== undefined;
}

export interface SlotState {
  /** Our slot of this name exists (one made in this database) and is usable: not invalidated. */
  readonly present: boolean;
  /**
   * Our slot of this name exists but was invalidated (`wal_status = 'lost'`:
   * the WAL it needed was removed, max_slot_wal_keep_size; or a conflict on a
   * standby): it can never stream again, so it counts as missing.
   */
  readonly lost: boolean;
  /** The database a slot of this name belongs to when it is not ours (null: none, or ours). */
  readonly elsewhere: string | null;
  /** Whether it is a failover slot; null when it is not present (or the server has none). */
  readonly failover: boolean | null;
  /** The server has failover slots (PostgreSQL 17+). */
  readonly failoverSlots: boolean;
}

/**
 * Whether our slot exists, whether it is a failover slot, and whether the
 * server has failover slots: the one "does our slot exist" check of espf run
 * (its catch-up and its stream) and `espf shards`.
 */
export async function slotState(db: Queryable, slot: string): Promise<SlotState> {
  const [s] = await db.query(sql`
    SELECT current_setting('server_version_num')::int >= 170000 AS failover_slots,
           (SELECT (to_jsonb(r) ->> 'failover')::boolean FROM pg_replication_slots r WHERE ${ourSlot('r', slot)} AND NOT ${lost('r')}) AS failover,
           EXISTS (SELECT FROM pg_replication_slots r WHERE ${ourSlot('r', slot)} AND NOT ${lost('r')}) AS present,
           EXISTS (SELECT FROM pg_replication_slots r WHERE ${ourSlot('r', slot)} AND ${lost('r')}) AS lost,
           (SELECT coalesce(r.database::text, '(a physical slot)') FROM pg_replication_slots r
             WHERE r.slot_name = ${slot} AND r.database IS DISTINCT FROM current_database()) AS elsewhere`);
  return { present: s.present, lost: s.lost, elsewhere: s.elsewhere, failover: s.failover, failoverSlots: s.failover_slots };
}

/** An invalidated slot (pg_replication_slots aliased `alias`): it will never stream again. */
function lost(alias: string): SQLQuery {
  const a = sql.ident(alias);
  return sql`(${a}.wal_status IS NOT DISTINCT FROM 'lost' OR coalesce((to_jsonb(${a}) ->> 'conflicting')::boolean, false))`;
}

/**
 * The one-line refusal when a slot of this name belongs to another database of
 * the server (slot names are per server): streaming it fails for ever with
 * "was not created in this database". Nothing is changed.
 */
export function refuseOtherDatabase(slot: string, s: SlotState): void {
  if (s.elsewhere === null) return;
  throw new EspfError('ESPF_SLOT_ELSEWHERE',
    `replication slot ${slot} belongs to database ${s.elsewhere} on this server, not to this one (slot names are per server): give this database's instance another name in espf.slots, or drop that slot if nothing streams it (docs/operations.md, "Several espf databases on one server")`);
}

/**
 * The slot name of an instance's shard in this database, recorded in espf.slots
 * at its first use (espf.claim_slot_name, sql/015_shards.sql: a slot that
 * exists keeps its name; a name another database's slot has is not taken).
 */
export async function claimSlotName(db: Queryable, instance: string, shard: { k: number; n: number }): Promise<string> {
  const [row] = await db.query(sql`SELECT espf.claim_slot_name(${instance}, ${shard.k}, ${shard.n}) AS slot`);
  return row.slot as string;
}

/** Drops our slot of this name if it was invalidated (SlotState.lost); true when it did. */
export async function dropLostSlot(db: Queryable, slot: string): Promise<boolean> {
  const rows = await db.query(sql`
    SELECT pg_drop_replication_slot(r.slot_name) FROM pg_replication_slots r
     WHERE ${ourSlot('r', slot)} AND ${lost('r')}`);
  return rows.length > 0;
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

/** Bytes of WAL between the server's position and what our slot has confirmed; null for no such slot. */
export async function slotLagBytes(db: Db, slot: string): Promise<number | null> {
  const [row] = await db.query(sql`
    SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), r.confirmed_flush_lsn)::float8 AS lag
      FROM pg_replication_slots r WHERE ${ourSlot('r', slot)}`);
  return row?.lag ?? null;
}
