import { Command, CommanderError, Option } from 'commander';
import { connect, ping, type Db } from '../db/connect.ts';
import { resolveDatabaseUrl } from '../db/database-url.ts';
import { EspfError, oneLine } from '../errors.ts';
import { migrate } from '../migrate/migrate.ts';
import {
  formatMatrix, readMatrix, setHandlerEnabled, setSubscription, setTypeEnabled,
} from '../config/handlers.ts';

/** Exit codes: 0 done, 1 refused or failed, 2 bad usage. */
const EXIT_FAILED = 1;
const EXIT_USAGE = 2;

type Out = { out: (s: string) => void; err: (s: string) => void };

async function withDb<T>(fn: (db: Db) => Promise<T>): Promise<T> {
  const url = resolveDatabaseUrl();
  const db = connect({ connectionString: url, poolSize: 2, applicationName: 'espf cli' });
  try {
    await ping(db, url);
    return await fn(db);
  } finally {
    await db.dispose();
  }
}

function onOff(cmd: string): boolean {
  if (cmd === 'enable' || cmd === 'sub') return true;
  if (cmd === 'disable' || cmd === 'unsub') return false;
  throw new EspfError('ESPF_USAGE', `unknown action '${cmd}'`);
}

export function buildProgram(io: Out): Command {
  const program = new Command('espf')
    .description('espf: provisioning events from a PostgreSQL billing database to HTTP endpoints.\nEvery command reads DATABASE_URL (else the embedded database of `espf run`, when it runs).')
    .exitOverride()
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .showHelpAfterError('(add --help for usage)');

  program.command('migrate')
    .description('apply migrations/ (once each, in order) and the repeatable SQL of sql/; safe to run again')
    .action(async () => {
      const r = await withDb((db) => migrate(db));
      io.out(`migrations: ${r.applied.length} applied${r.applied.length ? ` (${r.applied.join(', ')})` : ''}, ${r.alreadyApplied} already applied; sql/: ${r.repeatable.length} files re-applied\n`);
    });

  program.command('run')
    .description('run one sender instance: stream espf.events and deliver to its handlers (embedded PostgreSQL when DATABASE_URL is not set)')
    .addOption(new Option('--instance <name>', 'instance name (slot espf_<name>)').default('main'))
    .action(async (opts: { instance: string }) => {
      if (!/^[a-z0-9_]{1,50}$/.test(opts.instance)) {
        throw new EspfError('ESPF_USAGE', `--instance '${opts.instance}': use lower-case letters, digits and '_' (at most 50)`);
      }
      const { runService } = await import('../run/run-command.ts');
      await runService({ instance: opts.instance, out: io.out });
    });

  const handler = program.command('handler').description('enable, disable, subscribe and unsubscribe handlers');
  handler.command('enable').argument('<handler>').description('espf.handlers.enabled = true')
    .action(async (name: string) => report(io, await withDb((db) => setHandlerEnabled(db, name, true)), `handler ${name} enabled`));
  handler.command('disable').argument('<handler>').description('espf.handlers.enabled = false')
    .action(async (name: string) => report(io, await withDb((db) => setHandlerEnabled(db, name, false)), `handler ${name} disabled`));
  for (const action of ['sub', 'unsub'] as const) {
    handler.command(action).argument('<handler>').argument('<type>', "an event type, or 'all' (every type the handler can take)")
      .description(action === 'sub' ? 'subscribe a handler to an event type (a row of espf.subscriptions)' : 'unsubscribe a handler from an event type')
      .action(async (name: string, type: string) => {
        const n = await withDb((db) => setSubscription(db, name, type, onOff(action)));
        io.out(`${name}: ${n} subscription${n === 1 ? '' : 's'} ${action === 'sub' ? 'added' : 'removed'}\n`);
      });
  }

  const type = program.command('type').description('switch capture of event types on and off');
  for (const action of ['enable', 'disable'] as const) {
    type.command(action).argument('<type>', "an event type, or 'all'")
      .description(`espf.event_types.enabled = ${action === 'enable'}`)
      .action(async (name: string) => {
        const n = await withDb((db) => setTypeEnabled(db, name, onOff(action)));
        io.out(`${n} event type${n === 1 ? '' : 's'} ${action}d\n`);
      });
  }

  program.command('matrix')
    .description("print the matrix: a row per event type, a column per handler ('+' subscribed, '.' can subscribe)")
    .action(async () => io.out(formatMatrix(await withDb(readMatrix)) + '\n'));

  return program;
}

function report(io: Out, changed: boolean, what: string) {
  io.out(`${what}${changed ? '' : ' (no change)'}\n`);
}

/** Runs the CLI; returns the exit code. Never calls process.exit. */
export async function main(argv: readonly string[], io: Out = {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
}): Promise<number> {
  const program = buildProgram(io);
  try {
    if (argv.length <= 2) {
      io.out(program.helpInformation());
      return 0;
    }
    await program.parseAsync([...argv]);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
      return EXIT_USAGE; // commander already printed the one-line reason
    }
    if (err instanceof EspfError && err.code === 'ESPF_USAGE') {
      io.err(`espf: ${err.message}\n`);
      return EXIT_USAGE;
    }
    io.err(`espf: ${oneLine(err)}\n`);
    return EXIT_FAILED;
  }
}
