import type { Command } from 'commander';
import { createSlot, refuseOtherDatabase, slotState } from '../db/replication.ts';
import { cancelShardChange, checkShardChange, planShards, shardPublication, switchShards } from '../db/shards.ts';
import { EspfError, SQLSTATE, sqlState } from '../errors.ts';
import { shardSlot } from '../run/shard.ts';
import { quoteArg } from '../security/terminal.ts';
import { withDb } from './with-db.ts';

type Out = { out: (s: string) => void; err: (s: string) => void };
type Group = (parent: Command, name: string, description: string) => Command;

function instanceArg(v: string): string {
  if (!/^[a-z0-9_]{1,50}$/.test(v)) throw new EspfError('ESPF_USAGE', `instance ${quoteArg(v)}: use lower-case letters, digits and '_' (at most 50)`);
  return v;
}

function shardsArg(v: string): number {
  if (!/^[1-9][0-9]?$/.test(v) || Number(v) > 64) throw new EspfError('ESPF_USAGE', `number of shards ${quoteArg(v)}: a whole number from 1 to 64`);
  return Number(v);
}

/**
 * `espf shards plan <instance> <N>` and `espf shards switch <instance>`: change
 * the number of shards of an instance without losing an event and without two
 * shards sending one account's events at once (README "Shards", sql/015_shards.sql).
 */
export function registerShardsCommand(program: Command, io: Out, group: Group): Command {
  const shards = group(program, 'shards', 'change the number of shards of an instance (espf.handlers.shards) safely: plan, then switch');
  shards.addHelpText('after', `
Steps (README "Shards"):
  espf shards plan main 3     makes the slots of the 3 new shards, records the switch position
  (let the old shard processes run past it, then stop them)
  espf shards switch main     refuses until every old shard has passed the position and stopped;
                              then sets espf.handlers.shards and drops the old slots
  espf run --instance main --shard K, K = 0 … 2
  espf shards cancel main     instead of the switch: gives the planned change up, drops the new slots
`);

  shards.command('plan').argument('<instance>', 'the instance (espf.handlers.instance)').argument('<shards>', 'the new number of shards, 1 … 64')
    .description('make the publications and slots of the new shards, then record the switch position')
    .action(async (inst: string, n: string) => {
      const instance = instanceArg(inst);
      const to = shardsArg(n);
      const { from, lsn, made } = await withDb('espf shards', async (db) => {
        const from = await checkShardChange(db, instance, to);   // bad input: refused before any slot is made
        const made: string[] = [];
        for (let k = 0; k < to; k++) {
          await shardPublication(db, { k, n: to });
          const slot = await shardSlot(db, instance, { k, n: to });
          const s = await slotState(db, slot);
          refuseOtherDatabase(slot, s);
          if (s.present) continue;
          try {
            await createSlot(db, slot, s.failoverSlots);
            made.push(slot);
          } catch (err) {
            if (sqlState(err) !== SQLSTATE.duplicateObject) throw err; // made at the same moment
          }
        }
        return { from, lsn: await planShards(db, instance, to), made };
      });
      io.out(`instance ${instance}: ${from} → ${to} shards, switch position ${lsn}${made.length ? ` (slots made: ${made.join(', ')})` : ''}\n`
        + `next: let the ${from === 1 ? 'running process' : `${from} shard processes`} of ${instance} run past ${lsn}, stop ${from === 1 ? 'it' : 'them'}, then: espf shards switch ${instance}\n`);
    });

  shards.command('switch').argument('<instance>', 'the instance (espf.handlers.instance)')
    .description('switch to the planned number of shards once every old shard has passed the switch position and stopped')
    .action(async (inst: string) => {
      const instance = instanceArg(inst);
      const r = await withDb('espf shards', (db) => switchShards(db, instance));
      io.out(`instance ${instance}: ${r.to} shard${r.to === 1 ? '' : 's'} from now on (was ${r.from}); dropped ${r.dropped.join(', ')}\n`
        + `start: ${r.to === 1 ? `espf run --instance ${instance}` : `espf run --instance ${instance} --shard K, K = 0 … ${r.to - 1}`}\n`);
    });

  shards.command('cancel').argument('<instance>', 'the instance (espf.handlers.instance)')
    .description("give up a planned change: drop the new shards' slots (which keep WAL on the server) and forget it")
    .action(async (inst: string) => {
      const instance = instanceArg(inst);
      const dropped = await withDb('espf shards', (db) => cancelShardChange(db, instance));
      io.out(`instance ${instance}: planned change given up${dropped.length ? `; dropped ${dropped.join(', ')}` : ''}\n`);
    });
  return shards;
}
