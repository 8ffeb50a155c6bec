import type { Command } from 'commander';
import { normaliseHttp } from '../config/snapshot.ts';
import { eventForCheck, readHttpHandler, stepsOfHandlers } from '../db/config.ts';
import { dryRun, problemLines } from '../delivery/steps/dry-run.ts';
import { StepPlan } from '../delivery/steps/plan.ts';
import { EspfError } from '../errors.ts';
import { escapeTerminal } from '../security/terminal.ts';
import { withDb } from './with-db.ts';

type Out = { out: (s: string) => void; err: (s: string) => void };

/**
 * `espf handler check <handler> [--event I_EVENT]`: compiles every expression
 * of the handler's request steps (espf.http_steps) and prints a dry run, for
 * the event given or, per type with steps, the latest event of that type (a
 * sample when there is none). Sends nothing, changes nothing; exits 1 naming
 * each expression that does not compile (docs/cli.md).
 */
export function registerHandlerCheck(handler: Command, io: Out): void {
  handler.command('check').argument('<handler>', 'an http handler (a row of espf.http_handlers)')
    .option('--event <i_event>', 'render the steps for this event of espf.events')
    .description('compile the request steps of an http handler and print what they would send (a dry run: nothing is sent)')
    .action(async (name: string, opts: { event?: string }) => {
      let iEvent: number | null = null;
      if (opts.event !== undefined) {
        if (!/^[1-9][0-9]{0,17}$/.test(opts.event)) throw new EspfError('ESPF_USAGE', `--event: ${JSON.stringify(opts.event.slice(0, 40))} is not an i_event (a positive integer)`);
        iEvent = Number(opts.event);
      }
      const text = await withDb('espf handler check', async (db) => {
        const row = await readHttpHandler(db, name);
        if (!row) throw new EspfError('ESPF_UNKNOWN_HANDLER', `no http handler ${name} (a row of espf.http_handlers)`);
        const rows = await stepsOfHandlers(db, [name]);
        if (rows.length === 0) return { out: `handler ${name} has no request steps: it sends the EventSender body to each URL\n`, problems: [] };
        const plan = StepPlan.compile(rows);
        const problems = problemLines(plan);
        if (problems.length > 0) return { out: '', problems };
        const s = normaliseHttp(row);
        const parts: string[] = [`handler ${name}: ${rows.length} steps compile`];
        if (iEvent !== null) {
          const e = await eventForCheck(db, { iEvent });
          if (!e) throw new EspfError('ESPF_UNKNOWN_EVENT', `--event: no event ${iEvent} in espf.events`);
          parts.push(await dryRun(name, plan, s, e, `event ${e.i_event}`));
        } else {
          for (const type of plan.types) {
            const e = type === '*' ? undefined : await eventForCheck(db, { type });
            parts.push(await dryRun(name, plan, s, e ?? sampleEvent(type), e ? `the latest event of the type, ${e.i_event}` : 'a sample event'));
          }
        }
        return { out: `${parts.join('\n')}\n`, problems: [] };
      });
      if (text.problems.length > 0) {
        for (const p of text.problems) io.out(`${escapeTerminal(p)}\n`);
        throw new EspfError('ESPF_STEPS_BROKEN', `${text.problems.length} expression${text.problems.length === 1 ? '' : 's'} of handler ${name} do not compile`);
      }
      io.out(text.out.split('\n').map(escapeTerminal).join('\n'));
    });
}

/** A made-up event for a type without one in espf.events. */
function sampleEvent(type: string): { event_type: string; variables: Record<string, unknown> } {
  return { event_type: type === '*' ? 'Account/Sample' : type, variables: { i_event: 0, i_env: 1, i_account: 1, event_time: new Date().toISOString().slice(0, 19).replace('T', ' ') } };
}
