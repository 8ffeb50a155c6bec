import type { Command } from 'commander';
import { EspfError } from '../errors.ts';
import { DEFAULT_BATCH_SIZE, runBackfill, type BackfillProgress } from '../rules/backfill.ts';
import { withDb } from './with-db.ts';

type Out = { out: (s: string) => void; err: (s: string) => void };

function batchSize(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 100_000) {
    throw new EspfError('ESPF_USAGE', `--batch-size '${v}': use a whole number from 1 to 100000`);
  }
  return Number(v);
}

const rate = (p: BackfillProgress) => Math.round(p.rowsDone / Math.max(p.elapsedMs / 1000, 0.001));
const pct = (p: BackfillProgress) => (p.rowsTotal > 0 ? Math.min(100, Math.floor((100 * p.rowsDone) / p.rowsTotal)) : 100);

/** A bar redrawn in place on a terminal; a line at most once a second otherwise. */
function reporter(io: Out, tty: boolean): (p: BackfillProgress) => void {
  let lastLine = 0;
  return (p) => {
    if (tty) {
      const width = 30;
      const filled = Math.round((width * pct(p)) / 100);
      io.err(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${pct(p)}% ${p.rowsDone}/${p.rowsTotal} rows, ${rate(p)} rows/s${p.finished ? '\n' : ''}`);
      return;
    }
    const now = Date.now();
    if (p.finished || now - lastLine >= 1000) {
      lastLine = now;
      if (!p.finished) io.out(`backfill ${p.id} ${p.rule}: ${p.rowsDone}/${p.rowsTotal} rows (${pct(p)}%), ${p.events} events, last key ${p.lastKey}, ${rate(p)} rows/s\n`);
    }
  };
}

/** `espf backfill <rule> (--handler NAME | --all-handlers) [--where …] [--batch-size N] [--resume]` (docs/cli.md). */
export function registerBackfillCommand(program: Command, io: Out): Command {
  return program.command('backfill').argument('<rule>', 'a rule name (espf rule list)')
    .description("emit a rule's event for the rows that already exist in its table (their current values as NEW), in batches, resumable")
    .option('--handler <name>', 'deliver the events to this handler only (the others subscribed to the type get nothing)')
    .option('--all-handlers', 'deliver the events to every handler subscribed to the type')
    .option('--where <sql>', 'only rows of the source table for which this SQL condition holds')
    .option('--batch-size <n>', `rows per batch, each its own short transaction (1-100000, default ${DEFAULT_BATCH_SIZE})`, batchSize)
    .option('--resume', 'go on with the unfinished backfill of this rule from the last key done, with its options')
    .addHelpText('after', `
The rule's type must be enabled. A new backfill needs --handler NAME (the handler
just connected: the events are still in the outbox, the others get nothing) or
--all-handlers; without either it names the handlers that would receive the events
and writes nothing. Each batch locks its rows while it writes their events, so a
live change of a row is never delivered before its snapshot. Progress is recorded
in espf.backfills (espf status shows it); after Ctrl-C or a crash, --resume goes on
from the last key done with the stored options (others given with it must be the
same), and every row is emitted exactly once.

Examples:
  espf backfill Account/New --handler CRM
  espf backfill Account/New --all-handlers --where "i_customer = 42" --batch-size 5000
  espf backfill Account/New --resume
`)
    .action(async (rule: string, o: { where?: string; batchSize?: number; resume?: boolean; handler?: string; allHandlers?: boolean }) => {
      let stop = false;
      const onSigint = () => { stop = true; };
      process.on('SIGINT', onSigint);
      process.on('SIGTERM', onSigint);
      try {
        const tty = Boolean(process.stderr.isTTY);
        const p = await withDb('espf backfill', (db) => runBackfill(db, {
          rule, where: o.where, batchSize: o.batchSize, resume: Boolean(o.resume), handler: o.handler, allHandlers: Boolean(o.allHandlers),
          onProgress: reporter(io, tty), stopRequested: () => stop,
          onSettle: (s) => io.err(`backfill: the subscriptions or handlers changed moments ago; waiting ${s.toFixed(1)} s for running instances to read the change\n`),
        }));
        io.out(`backfill ${p.id} ${p.rule}: done, ${p.rowsDone} rows, ${p.events} events in ${(p.elapsedMs / 1000).toFixed(1)} s (${rate(p)} rows/s)\n`);
      } finally {
        process.off('SIGINT', onSigint);
        process.off('SIGTERM', onSigint);
      }
    });
}
