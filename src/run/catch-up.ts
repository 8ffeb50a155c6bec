import os from 'node:os';
import { sql } from '@databases/pg';
import type { Db } from '../db/connect.ts';
import type { Shard } from '../db/shards.ts';
import { SQLSTATE, sqlState } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import { parseLsn } from '../stream/lsn.ts';

export interface CatchUpOptions {
  readonly db: Db;
  readonly instance: string;
  /** The shard this process serves ({ k: 0, n: 1 }: the whole instance): only its events are caught up. */
  readonly shard: Shard;
  readonly slot: string;
  /** Makes the slot (and the publication) if missing. */
  readonly prepareSlot: () => Promise<void>;
  readonly log: Logger;
  /** (event, handler) pairs caught up, per handler (metrics). */
  readonly observe?: (handler: string, events: number) => void;
}

/**
 * Before an instance streams: make its slot, then deliver what no slot carried
 * to its handlers (espf.catch_up, sql/450_catch_up.sql: events committed
 * before the instance first streamed, or while a handler waited on it).
 * Returns the replay horizon: a streamed transaction ending at or below it is
 * checked against espf.event_deliveries, so what the catch-up recorded is not
 * delivered twice.
 */
export async function catchUp(opts: CatchUpOptions): Promise<bigint> {
  const { db, instance, shard, slot, log } = opts;
  // The slot first: from its creation on it carries every commit, so what the
  // catch-up's snapshot (taken after) does not see, the stream delivers.
  const [existing] = await db.query(sql`SELECT 1 FROM pg_replication_slots WHERE slot_name = ${slot} AND database = current_database()`);
  await opts.prepareSlot();
  const slotCreated = !existing;
  let r: { horizon: string; handlers: Record<string, number> };
  try {
    const [row] = await db.query(sql`SELECT espf.catch_up(${instance}, ${slotCreated}, ${os.hostname()}, ${process.pid}, ${shard.k}, ${shard.n}) AS r`);
    r = row.r;
  } catch (err) {
    // A database espf migrate has not brought to this release yet: stream without catching up.
    if (sqlState(err) !== SQLSTATE.undefinedFunction) throw err;
    log.warn({ instance }, 'no catch-up: the database lacks espf.catch_up (run espf migrate); events committed before this instance streams may not be delivered');
    return 0n;
  }
  const of = shard.n > 1 ? `instance ${instance} shard ${shard.k} of ${shard.n}` : `instance ${instance}`;
  let total = 0;
  for (const [handler, n] of Object.entries(r.handlers)) {
    total += n;
    opts.observe?.(handler, n);
    log.info({ instance, handler, events: n },
      `caught up ${n} event${n === 1 ? '' : 's'} for ${handler}: committed while it was enabled and subscribed, before a slot of ${of} carried them`);
  }
  if (total === 0) log.debug({ instance, slotCreated }, 'catch-up: nothing to catch up');
  return parseLsn(r.horizon);
}
