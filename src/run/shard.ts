import type { Db } from '../db/connect.ts';
import { claimSlotName } from '../db/replication.ts';
import { instanceShards, type Shard } from '../db/shards.ts';
import { EspfError } from '../errors.ts';

export type { Shard };

/**
 * Which part of its instance's events one `espf run` process serves: shard
 * `k` of `n` streams the events whose espf.events.shard_key % n = k (README
 * "Shards", docs/scaling.md). n = 1: the whole instance, as without shards.
 */
export const WHOLE: Shard = { k: 0, n: 1 };

/**
 * The classic slot name of an instance's shard: espf_<instance>, or
 * espf_<instance>_<k>of<n>. What a sender shows before it starts; the name it
 * streams is the database's (`shardSlot`).
 */
export function classicSlotName(instance: string, shard: Shard): string {
  return shard.n <= 1 ? `espf_${instance}` : `espf_${instance}_${shard.k}of${shard.n}`;
}

/**
 * The slot of an instance's shard in this database, recorded at its first use
 * (sql/015_shards.sql, "Slot names"): the classic name unless a slot of another
 * database of the server has it, then one unique to this database.
 */
export function shardSlot(db: Db, instance: string, shard: Shard): Promise<string> {
  return claimSlotName(db, instance, shard);
}

/** "2 of 3" for messages. */
export function shardText(shard: Shard): string {
  return `${shard.k} of ${shard.n}`;
}

/**
 * The shard this process runs, from --shard and espf.handlers.shards of the
 * instance's handlers. ESPF_USAGE (one line) when they do not fit together.
 */
export async function resolveShard(db: Db, instance: string, requested: number | undefined): Promise<Shard> {
  const n = await instanceShards(db, instance);
  if (n <= 1) {
    if (requested !== undefined && requested !== 0) {
      throw new EspfError('ESPF_USAGE', `--shard ${requested}: instance ${instance} is not split into shards (espf.handlers.shards = 1); start it without --shard`);
    }
    return WHOLE;
  }
  if (requested === undefined) {
    throw new EspfError('ESPF_USAGE', `instance ${instance} is split into ${n} shards (espf.handlers.shards): start one process per shard, espf run --instance ${instance} --shard K, K = 0 … ${n - 1}`);
  }
  if (requested >= n) {
    throw new EspfError('ESPF_USAGE', `--shard ${requested}: instance ${instance} has ${n} shards, numbered 0 … ${n - 1}`);
  }
  return { k: requested, n };
}
