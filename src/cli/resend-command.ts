import type { Command } from 'commander';
import type { Db } from '../db/connect.ts';
import { handlerByName } from '../db/config.ts';
import { resendFiltered, resendWindow, type ResendFilter } from '../db/resend.ts';
import { EspfError } from '../errors.ts';
import { withDb } from './with-db.ts';
import { quoteArg } from '../security/terminal.ts';

type Out = { out: (s: string) => void; err: (s: string) => void };

/** The selectors of `espf resend` (at least one is set). */
export interface ResendSelection {
  readonly events: readonly number[] | null;
  readonly account: number | null;
  readonly handler: string | null;
  readonly status: 'DELIVERED' | 'FAILED' | null;
  readonly since: string | null;        // as given: a time or an interval back from now
  /** The console's filters: the event type, and created at or after / before (times PostgreSQL reads). */
  readonly type?: string | null;
  readonly createdSince?: string | null;
  readonly createdUntil?: string | null;
}

export interface ResendOptions {
  readonly batch: number;               // rows per transaction
  readonly dryRun: boolean;
  /** Called after each batch with the rows re-queued so far and the total selected. */
  readonly progress?: (done: number, total: number) => void;
  /** At most this many rows are re-queued (the lowest i_event first); the rest stay as they are. */
  readonly maxRows?: number;
  /** Looked at before each batch: once aborted, no further batch starts. */
  readonly signal?: AbortSignal;
}

export interface ResendResult {
  readonly selected: number;            // finished deliveries matching the selectors when it started
  readonly requeued: number;            // 0 on a dry run
  /** Why it stopped before every selected row was re-queued: the cap (maxRows) or the signal. */
  readonly stopped: 'cap' | 'cancelled' | null;
}

/**
 * Re-queues the finished deliveries a selection names, in batches of
 * `opts.batch` rows (one transaction each, espf.resend of sql/700_resend.sql).
 * Only deliveries finished before it started are taken, so one that is
 * delivered again meanwhile is not re-queued twice.
 */
export async function resend(db: Db, sel: ResendSelection, opts: ResendOptions): Promise<ResendResult> {
  const t = await resendWindow(db, sel.since);
  if (sel.since !== null && t.since === null) {
    throw new EspfError('ESPF_USAGE', `--since ${quoteArg(sel.since)}: use a time (2026-11-25, '2026-11-25 21:00+01', yesterday) or an interval back from now ('24 hours', '2 days')`);
  }
  if (sel.handler !== null) {
    if (!(await handlerByName(db, sel.handler))) throw new EspfError('ESPF_UNKNOWN_HANDLER', `unknown handler ${quoteArg(sel.handler)} (not a row of espf.handlers; see: espf matrix)`);
  }
  const call: ResendFilter = {
    events: sel.events, account: sel.account, handler: sel.handler, status: sel.status, since: t.since, until: t.started,
    type: sel.type ?? null, createdSince: sel.createdSince ?? null, createdUntil: sel.createdUntil ?? null,
  };
  const selected = await resendFiltered(db, call, 1, true);
  if (opts.dryRun || selected === 0) return { selected, requeued: 0, stopped: null };
  const cap = opts.maxRows ?? Infinity;
  let requeued = 0;
  for (;;) {
    if (opts.signal?.aborted) return { selected, requeued, stopped: 'cancelled' };
    if (requeued >= cap) return { selected, requeued, stopped: requeued < selected ? 'cap' : null };
    const n = await resendFiltered(db, call, Math.min(opts.batch, cap - requeued), false);
    if (n === 0) break;
    requeued += n;
    opts.progress?.(requeued, Math.max(selected, requeued));
  }
  return { selected, requeued, stopped: null };
}

/**
 * Whether a selection is narrow enough to run without confirming its count
 * (docs/cli.md, docs/console.md): events or an account named, state FAILED, or
 * a handler and a time window. Anything wider could re-send every delivery ever
 * made to a receiver.
 */
export function isNarrow(sel: ResendSelection): boolean {
  return sel.events !== null || sel.account !== null || sel.status === 'FAILED'
    || (sel.handler !== null && (sel.since !== null || (sel.createdSince ?? null) !== null));
}

/** The most deliveries one `espf resend` re-queues unless --max-rows says otherwise. */
export const DEFAULT_MAX_ROWS = 100_000;

function wholeNumber(name: string, max = Number.MAX_SAFE_INTEGER) {
  return (v: string): number => {
    if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > max) {
      throw new EspfError('ESPF_USAGE', `${name} ${quoteArg(v)}: use a whole number from 1 to ${max}`);
    }
    return Number(v);
  };
}

interface RawOptions {
  event?: number[]; account?: number; handler?: string; status?: string; since?: string;
  dryRun?: boolean; batch: number; confirm?: number; maxRows: number;
}

/** Registers `espf resend` on the program. */
export function registerResendCommand(program: Command, io: Out, isTty: () => boolean = () => Boolean(process.stderr.isTTY)): Command {
  return program.command('resend')
    .description('re-queue finished deliveries (DELIVERED, FAILED) by event, account, handler, status and time; the running espf run sends them again')
    .option('--event <i_event>', 'the deliveries of this event (repeatable)',
      (v: string, prev: number[] | undefined) => [...(prev ?? []), wholeNumber('--event')(v)])
    .option('--account <i_account>', 'the deliveries of this account', wholeNumber('--account'))
    .option('--handler <name>', 'the deliveries to this handler (a row of espf.handlers)')
    .option('--status <status>', 'DELIVERED or FAILED (default: both)')
    .option('--since <time>', "finished at or after this time (2026-11-25, '2026-11-25 21:00+01', yesterday) or this long ago ('24 hours')")
    .option('--dry-run', 'print how many deliveries would be re-queued; change nothing')
    .option('--batch <n>', 'rows re-queued per transaction (1-100000)', wholeNumber('--batch', 100_000), 5000)
    .option('--confirm <count>', 'run a wide selection: the number of deliveries it matches (as --dry-run prints it)', wholeNumber('--confirm'))
    .option('--max-rows <n>', `re-queue at most this many (lowest i_event first; run again for the rest; default ${DEFAULT_MAX_ROWS})`, wholeNumber('--max-rows', 10_000_000), DEFAULT_MAX_ROWS)
    .addHelpText('after', `
At least one of --event, --account, --handler, --status, --since is required; they
combine with AND. A selection without --event, --account or --status FAILED, and
without both --handler and --since (say --status DELIVERED, or --handler alone),
could re-send every delivery ever made: it is refused with the number it matches,
and runs with --confirm <that number>. At most --max-rows are re-queued per run.

Only finished deliveries (state DELIVERED or FAILED) are taken:
each becomes PENDING again with attempts 0, no error, the handler's current
instance and requeued = true; the espf run serving the handler sends it again
within about a second (or when it starts). Progress goes to stderr.

The same in SQL (one batch per call; call again until it returns 0):
  SELECT espf.resend(status => 'FAILED', since => now() - interval '1 day');

Examples:
  espf resend --status FAILED --since '24 hours'
  espf resend --event 1234 --event 1235
  espf resend --account 42 --handler EventSender
  espf resend --handler EventSender --since 2026-11-25 --dry-run
  espf resend --handler EventSender --confirm 12000
`)
    .action(async (o: RawOptions) => {
      let status: ResendSelection['status'] = null;
      if (o.status !== undefined) {
        const s = o.status.toUpperCase();
        if (s !== 'DELIVERED' && s !== 'FAILED') {
          throw new EspfError('ESPF_USAGE', `--status ${quoteArg(o.status)}: use DELIVERED or FAILED (only finished deliveries are re-queued)`);
        }
        status = s;
      }
      if (o.since !== undefined && o.since.trim() === '') throw new EspfError('ESPF_USAGE', "--since '': give a time or an interval");
      const sel: ResendSelection = {
        events: o.event ?? null, account: o.account ?? null, handler: o.handler ?? null, status, since: o.since ?? null,
      };
      if (!sel.events && sel.account === null && sel.handler === null && sel.status === null && sel.since === null) {
        throw new EspfError('ESPF_USAGE', 'resend: give at least one of --event, --account, --handler, --status, --since (see: espf resend --help)');
      }
      const tty = isTty();
      let shown = false;
      const progress = (done: number, total: number) => {
        if (total <= o.batch) return; // one batch: no progress to show
        shown = true;
        const pct = Math.floor((done / total) * 100);
        if (tty) io.err(`\rre-queued ${done} of ${total} (${pct}%)`);
        else io.err(`espf resend: re-queued ${done} of ${total} (${pct}%)\n`);
      };
      const r = await withDb('espf resend', async (db) => {
        if (!o.dryRun && !isNarrow(sel)) {
          const { selected } = await resend(db, sel, { batch: o.batch, dryRun: true });
          if (selected > 0 && o.confirm !== selected) {
            throw new EspfError('ESPF_USAGE', `resend: this selection matches ${selected} deliveries and is not narrowed by --event, --account, --status FAILED or --handler with --since: `
              + `${o.confirm === undefined ? 'confirm with' : `not ${o.confirm}: confirm with`} --confirm ${selected}, or narrow it (nothing changed)`);
          }
        }
        return resend(db, sel, { batch: o.batch, dryRun: Boolean(o.dryRun), progress, maxRows: o.maxRows });
      });
      if (shown && tty) io.err('\n');
      const plural = (n: number) => `${n} deliver${n === 1 ? 'y' : 'ies'}`;
      if (o.dryRun) io.out(`${plural(r.selected)} would be re-queued (dry run: nothing changed)\n`);
      else if (r.stopped === 'cap') io.out(`re-queued ${plural(r.requeued)}: the most one run re-queues (--max-rows ${o.maxRows}); ${r.selected - r.requeued} more matched: run it again\n`);
      else io.out(`re-queued ${plural(r.requeued)}\n`);
    });
}
