// Shards of an instance (README "Shards", sql/015_shards.sql): how many the
// handlers of an instance are split into, and the publication of each.
import { sql } from '@databases/pg';
import type { Db } from './connect.ts';

/**
 * Shard `k` of `n` of an instance: it serves the events whose
 * espf.events.shard_key % n = k. { k: 0, n: 1 }: the whole instance.
 */
export interface Shard {
  readonly k: number;
  readonly n: number;
}

/** espf.handlers.shards of the instance's handlers (1 when it has none). */
export async function instanceShards(db: Db, instance: string): Promise<number> {
  const [row] = await db.query(sql`SELECT max(shards)::int AS n FROM espf.handlers WHERE instance = ${instance}`);
  return row?.n ?? 1;
}

/** The publication of a shard (made on first use by the database). */
export async function shardPublication(db: Db, shard: Shard): Promise<string> {
  const [row] = await db.query(sql`SELECT espf.shard_publication(${shard.k}, ${shard.n}) AS pub`);
  return row.pub as string;
}

/** The instance's number of shards, if `to` is a change of it (else the database's one-line refusal, 22023). */
export async function checkShardChange(db: Db, instance: string, to: number): Promise<number> {
  const [row] = await db.query(sql`SELECT espf.check_shard_change(${instance}, ${to}) AS n`);
  return row.n as number;
}

/** Records a change of the number of shards once the new shards' slots exist; the switch position. */
export async function planShards(db: Db, instance: string, to: number): Promise<string> {
  const [row] = await db.query(sql`SELECT espf.plan_shards(${instance}, ${to})::text AS lsn`);
  return row.lsn as string;
}

/** Gives up a planned change: drops the new shards' slots (refused while one is streamed); the slots dropped. */
export async function cancelShardChange(db: Db, instance: string): Promise<string[]> {
  const [row] = await db.query(sql`SELECT espf.cancel_shard_change(${instance}) AS dropped`);
  return row.dropped as string[];
}

export interface ShardSwitch { readonly from: number; readonly to: number; readonly switch_lsn: string; readonly dropped: string[] }

/** The switch of a planned change (the database refuses, one line, while an old shard is not drained and stopped). */
export async function switchShards(db: Db, instance: string): Promise<ShardSwitch> {
  const [row] = await db.query(sql`SELECT espf.switch_shards(${instance}) AS r`);
  return row.r as ShardSwitch;
}
