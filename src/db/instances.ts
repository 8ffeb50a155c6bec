// espf.instances and the catch-up of sql/450_catch_up.sql: the heartbeat of
// a running instance (src/run/instances.ts) and what it is owed before it
// streams (src/run/catch-up.ts).
import { sql, type Queryable } from '@databases/pg';
import type { Shard } from './shards.ts';

export interface Heartbeat {
  readonly streaming: boolean;
  /** How far it has processed (an LSN as text); null while it does not stream. */
  readonly durableLsn: string | null;
  /** The enabled handlers the instance serves now. */
  readonly served: readonly string[];
  readonly shard: Shard;
}

/** The instance's row of espf.instances: when it streamed, how far it processed, which handlers its slot carries. */
export async function instanceHeartbeat(db: Queryable, instance: string, b: Heartbeat): Promise<void> {
  await db.query(sql`SELECT espf.instance_heartbeat(${instance}, ${b.streaming}, ${b.durableLsn}::pg_lsn, ${[...b.served]}::text[], ${b.shard.k}, ${b.shard.n})`);
}

/** A graceful stop: espf.instances.stopped_at. */
export async function instanceStopped(db: Queryable, instance: string): Promise<void> {
  await db.query(sql`SELECT espf.instance_stopped(${instance})`);
}

/**
 * The instance's slot is about to be made anew: the handlers it covered are
 * owed a catch-up from how far it had processed (espf.slot_missing).
 */
export async function markSlotMissing(db: Queryable, instance: string, shard: Shard): Promise<void> {
  await db.query(sql`SELECT espf.slot_missing(${instance}, ${shard.k}, ${shard.n})`);
}

/** What espf.catch_up returns: the replay horizon (an LSN as text) and the (event, handler) pairs caught up per handler. */
export interface CatchUpCounts { readonly horizon: string; readonly handlers: Record<string, number> }

/** Delivers (records as waiting) what no slot carried to the instance's handlers, for one shard (espf.catch_up). */
export async function catchUpInstance(db: Queryable, instance: string, slotCreated: boolean, host: string, pid: number, shard: Shard): Promise<CatchUpCounts> {
  const [row] = await db.query(sql`SELECT espf.catch_up(${instance}, ${slotCreated}, ${host}, ${pid}, ${shard.k}, ${shard.n}) AS r`);
  return row.r;
}
