import type { Command } from 'commander';
import { EspfError } from '../errors.ts';
import { DEFAULT_BATCH_SIZE, runBackfill, type BackfillProgress } from '../rules/backfill.ts';
import type { Pace } from '../rules/backfill-pace.ts';
import { withDb } from './with-db.ts';

type Out = { out: (s: string) => void; err: (s: string) => void };

function batchSize(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 100_000) {
    throw new EspfError('ESPF_USAGE', `--batch-size '${v}': use a whole number from 1 to 100000`);
  }
  return Number(v);
}

function rateOption(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > 10_000_000) {
    throw new EspfError('ESPF_USAGE', `--rate '${v}': use a whole number of rows per second from 1 to 10000000`);
  }
  return Number(v);
}

/** --rate and --fast as a pace; neither: undefined (the default, or the stored pace with --resume). */
function paceOption(o: { rate?: number; fast?: boolean }): Pace | undefined {
  if (o.rate !== undefined && o.fast) throw new EspfError('ESPF_USAGE', '--rate and --fast: give one of them');
  return o.rate !== undefined ? { kind: 'rate', rowsPerS: o.rate } : o.fast ? { kind: 'fast' } : undefined;
}

const rate = (p: BackfillProgress) => Math.round(p.rowsDone / Math.max(p.elapsedMs / 1000, 0.001));
const thousands = (n: number) => Math.round(n).toLocaleString('en-US');
const pct = (p: BackfillProgress) => (p.rowsTotal > 0 ? Math.min(100, Math.floor((100 * p.rowsDone) / p.rowsTotal)) : 100);

/**
 * A bar redrawn in place on a terminal (at most 10 times a second); a line at
 * most once a second otherwise. Each says how fast it goes since the previous
 * one, and why (src/rules/backfill-pace.ts): "1,850 rows/s, yielding: …".
 */
function reporter(io: Out, tty: boolean): (p: BackfillProgress) => void {
  let last = { at: 0, rows: -1 };
  return (p) => {
    const now = Date.now();
    if (!p.finished && now - last.at < (tty ? 100 : 1000)) return;
    // The first time: since the start of this run.
    const recent = last.rows < 0 ? rate(p) : ((p.rowsDone - last.rows) * 1000) / Math.max(now - last.at, 1);
    last = { at: now, rows: p.rowsDone };
    const speed = `${thousands(recent)} rows/s, ${p.pace.reason}`;
    if (tty) {
      const width = 30;
      const filled = Math.round((width * pct(p)) / 100);
      io.err(`\r\x1b[K[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${pct(p)}% ${p.rowsDone}/${p.rowsTotal} rows, ${p.finished ? `${thousands(rate(p))} rows/s\n` : speed}`);
    } else if (!p.finished) {
      io.out(`backfill ${p.id} ${p.rule}: ${p.rowsDone}/${p.rowsTotal} rows (${pct(p)}%), ${p.events} events, last key ${p.lastKey}, ${speed}\n`);
    }
  };
}

/** `espf backfill <rule> (--handler NAME | --all-handlers) [--where …] [--batch-size N] [--rate N | --fast] [--resume]` (docs/cli.md). */
export function registerBackfillCommand(program: Command, io: Out): Command {
  return program.command('backfill').argument('<rule>', 'a rule name (espf rule list)')
    .description("emit a rule's event for the rows that already exist in its table (their current values as NEW), in batches, resumable")
    .option('--handler <name>', 'deliver the events to this handler only (the others subscribed to the type get nothing)')
    .option('--all-handlers', 'deliver the events to every handler subscribed to the type')
    .option('--where <sql>', 'only rows of the source table for which this SQL condition holds')
    .option('--batch-size <n>', `rows per batch, each its own short transaction (1-100000, default ${DEFAULT_BATCH_SIZE}; the most a batch takes while it yields)`, batchSize)
    .option('--rate <n>', 'a fixed pace: at most N rows per second (1-10000000), whatever billing does', rateOption)
    .option('--fast', 'no yielding: batches back to back, as fast as it can (an off-peak run)')
    .option('--resume', 'go on with the unfinished backfill of this rule from the last key done, with its options')
    .addHelpText('after', `
The rule's type must be enabled. A new backfill needs --handler NAME (the handler
just connected: the events are still in the outbox, the others get nothing) or
--all-handlers; without either it names the handlers that would receive the events
and writes nothing. Each batch locks its rows while it writes their events, so a
live change of a row is never delivered before its snapshot. By default it yields
to billing: it measures its batches' latency against their idle latency and works
less of the time (down to a third) while billing slows them, full speed while it
does not; --rate N or --fast set the pace instead. Progress is recorded
in espf.backfills (espf status shows it); after Ctrl-C or a crash, --resume goes on
from the last key done with the stored options (others given with it must be the
same), and every row is emitted exactly once.

Examples:
  espf backfill Account/New --handler CRM
  espf backfill Account/New --all-handlers --where "i_customer = 42" --batch-size 5000
  espf backfill Account/New --handler CRM --rate 2000
  espf backfill Account/New --resume
`)
    .action(async (rule: string, o: { where?: string; batchSize?: number; resume?: boolean; handler?: string; allHandlers?: boolean; rate?: number; fast?: boolean }) => {
      const pace = paceOption(o);
      let stop = false;
      const onSigint = () => { stop = true; };
      process.on('SIGINT', onSigint);
      process.on('SIGTERM', onSigint);
      try {
        const tty = Boolean(process.stderr.isTTY);
        const p = await withDb('espf backfill', (db) => runBackfill(db, {
          rule, where: o.where, batchSize: o.batchSize, pace, resume: Boolean(o.resume), handler: o.handler, allHandlers: Boolean(o.allHandlers),
          onProgress: reporter(io, tty), stopRequested: () => stop,
        }));
        io.out(`backfill ${p.id} ${p.rule}: done, ${p.rowsDone} rows, ${p.events} events in ${(p.elapsedMs / 1000).toFixed(1)} s (${rate(p)} rows/s)\n`);
      } finally {
        process.off('SIGINT', onSigint);
        process.off('SIGTERM', onSigint);
      }
    });
}
