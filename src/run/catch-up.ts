import os from 'node:os';
import type { Db } from '../db/connect.ts';
import { catchUpInstance, markSlotMissing, type CatchUpCounts } from '../db/instances.ts';
import { refuseOtherDatabase, slotState } from '../db/replication.ts';
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
  /** Log a line per handler caught up (at start); the caller says it otherwise. */
  readonly logHandlers?: boolean;
  /**
   * The slot was found missing (src/run/sender.ts, recoverSlot): catch up as
   * for a slot made now, even if an earlier attempt that failed made it.
   */
  readonly slotLost?: boolean;
}

export interface CatchUpResult {
  /** The replay horizon (0 when the database has no espf.catch_up). */
  readonly horizon: bigint;
  /** The slot was made by this call. */
  readonly slotCreated: boolean;
  /** (event, handler) pairs caught up, in all and per handler. */
  readonly events: number;
  readonly handlers: Readonly<Record<string, number>>;
}

/**
 * Before an instance streams: make its slot, then deliver what no slot carried
 * to its handlers (espf.catch_up, sql/450_catch_up.sql: events committed
 * before the instance first streamed, or while a handler waited on it).
 * Returns the replay horizon: a streamed transaction ending at or below it is
 * checked against espf.event_deliveries, so what the catch-up recorded is not
 * delivered twice.
 */
export async function catchUp(opts: CatchUpOptions): Promise<CatchUpResult> {
  const { db, instance, shard, slot, log } = opts;
  // The slot first: from its creation on it carries every commit, so what the
  // catch-up's snapshot (taken after) does not see, the stream delivers.
  const state = await slotState(db, slot);
  // A slot of this name made by another database of the server: refused before anything changes.
  refuseOtherDatabase(slot, state);
  // Missing or invalidated (wal_status lost), the slot is made anew and carries
  // nothing of what committed before: the handlers it covered are owed a
  // catch-up from how far the instance (shard) had processed, kept before the
  // slot exists so that a stop in between does not forget it (a shard's in
  // espf.shard_progress.owed_from).
  const existing = state.present;
  if (!existing) await markSlotMissing(db, instance, shard).catch((err: unknown) => {
    if (sqlState(err) !== SQLSTATE.undefinedFunction) throw err; // not migrated yet: below
  });
  await opts.prepareSlot();
  const slotCreated = !existing || opts.slotLost === true;
  let r: CatchUpCounts;
  try {
    r = await catchUpInstance(db, instance, slotCreated, os.hostname(), process.pid, shard);
  } catch (err) {
    // A database espf migrate has not brought to this release yet: stream without catching up.
    if (sqlState(err) !== SQLSTATE.undefinedFunction) throw err;
    log.warn({ instance }, 'no catch-up: the database lacks espf.catch_up (run espf migrate); events committed before this instance streams may not be delivered');
    return { horizon: 0n, slotCreated, events: 0, handlers: {} };
  }
  const of = shard.n > 1 ? `instance ${instance} shard ${shard.k} of ${shard.n}` : `instance ${instance}`;
  let total = 0;
  for (const [handler, n] of Object.entries(r.handlers)) {
    total += n;
    opts.observe?.(handler, n);
    if (opts.logHandlers ?? true) {
      log.info({ instance, handler, events: n },
        `caught up ${n} event${n === 1 ? '' : 's'} for ${handler}: committed while it was enabled and subscribed, before a slot of ${of} carried them`);
    }
  }
  if (total === 0) log.debug({ instance, slotCreated }, 'catch-up: nothing to catch up');
  return { horizon: parseLsn(r.horizon), slotCreated, events: total, handlers: r.handlers };
}
