import { Command, CommanderError, Option } from 'commander';
import { EspfError, oneLine } from '../errors.ts';
import { escapeTerminal, quoteArg } from '../security/terminal.ts';
import { readEnv } from '../config/env.ts';
import { migrate } from '../migrate/migrate.ts';
import {
  formatMatrix, readMatrix, setHandlerEnabled, setSubscription, setTypeEnabled,
} from '../config/handlers.ts';
import { registerStatusCommand } from './status-command.ts';
import { registerResendCommand } from './resend-command.ts';
import { registerConsoleCommand } from './console-command.ts';
import { registerRuleCommand } from './rule-command.ts';
import { registerBackfillCommand } from './backfill-command.ts';
import { registerShardsCommand } from './shards-command.ts';
import { registerHandlerCheck } from './handler-check-command.ts';
import { registerHandlerSettings } from './handler-settings-command.ts';
import { withDb } from './with-db.ts';

/** Exit codes: 0 done, 1 refused or failed, 2 bad usage. */
export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;

type Out = { out: (s: string) => void; err: (s: string) => void };

const ENVIRONMENT_HELP = `
Environment:
  DATABASE_URL   the billing database (postgres://user:password@host:port/database).
                 When it is not set, the embedded database of \`espf run\` is used
                 while it runs (ESPF_HOME, default ./.espf); otherwise espf refuses.
  ESPF_HOME, ESPF_PG_PORT, ESPF_HTTP_PORT, ESPF_HTTP_HOST, ESPF_LOG_LEVEL,
  ESPF_LOG_FORMAT, ESPF_LOG_DIR, NO_COLOR: see docs/cli.md. Every variable is
  checked before a command starts; a bad one is refused naming it (exit 1).

Exit codes:
  0  done
  1  refused or failed (unknown handler or type, a row the database refuses,
     no database, a bad environment variable); one line on stderr says why,
     and nothing was changed
  2  bad usage (unknown command or option, missing or extra argument)
`;

/** `espf handler sub` for the program's `sub` command, and so on. */
function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/**
 * Commander's errors in one line, with the command's own help as the hint:
 *   espf handler sub: missing required argument 'type' (see: espf handler sub --help)
 */
function configureOutputs(cmd: Command, io: Out): void {
  const path = commandPath(cmd);
  cmd.configureOutput({
    writeOut: io.out,
    writeErr: io.err,
    outputError: (str) => {
      const text = str.trim().replace(/^error:\s*/, '').split('\n').map((l) => l.trim()).filter(Boolean).join(' ');
      const short = text.length > 300 ? `${text.slice(0, 299)}… (${text.length} characters)` : text;
      io.err(`${path}: ${escapeTerminal(short)} (see: ${path} --help)\n`);
    },
  });
  for (const sub of cmd.commands) configureOutputs(sub, io);
}

/**
 * A command that only groups subcommands: without one, or with an unknown one,
 * it says so in one line (exit 2) instead of printing its whole help on stderr.
 */
function group(parent: Command, name: string, description: string): Command {
  const cmd = parent.command(name).description(description).helpCommand(true);
  cmd.action((_opts: unknown, self: Command) => {
    const known = self.commands.map((c) => c.name()).filter((n) => n !== 'help');
    const [first] = self.args;
    const list = `${known.slice(0, -1).join(', ')} or ${known.at(-1)}`;
    self.error(first === undefined ? `missing command: ${list}` : `unknown command ${quoteArg(first)}: use ${list}`,
      { exitCode: EXIT_USAGE, code: 'espf.usage' });
  });
  return cmd;
}

export function buildProgram(io: Out): Command {
  const program = new Command('espf')
    .description('espf: provisioning events from a PostgreSQL billing database to HTTP endpoints.\n'
      + 'Configuration lives in rows of the espf schema; these commands write those rows.')
    .exitOverride()
    .addHelpText('after', ENVIRONMENT_HELP)
    // Every environment variable is checked before any command starts (src/config/env.ts).
    .hook('preAction', () => { readEnv(); });

  program.command('migrate')
    .description('apply migrations/ (once each, in order) and the repeatable SQL of sql/; safe to run again')
    .addHelpText('after', `
Each migration runs in its own transaction and is recorded in espf.migrations with
its checksum; a migration whose statements were edited after it was applied is
refused (comment-only lines may change). Two migrates at once run one after the
other (advisory lock).

Example:
  DATABASE_URL=postgres://postgres@localhost/billing espf migrate
`)
    .action(async () => {
      const r = await withDb('espf migrate', (db) => migrate(db));
      io.out(`migrations: ${r.applied.length} applied${r.applied.length ? ` (${r.applied.join(', ')})` : ''}, ${r.alreadyApplied} already applied; sql/: ${r.repeatable.length} files re-applied\n`);
      for (const name of r.keptRules) io.out(`kept built-in rule ${name} as changed by a DBA (espf rule show ${name})\n`);
    });

  program.command('run')
    .description('run one sender instance: stream espf.events and deliver to its handlers (embedded PostgreSQL when DATABASE_URL is not set)')
    .addOption(new Option('--instance <name>', 'instance name (slot espf_<name>)').default('main'))
    .addOption(new Option('--shard <K>', 'the shard this process serves, 0 … N-1, when the instance\'s handlers are split into N shards (espf.handlers.shards)'))
    .action(async (opts: { instance: string; shard?: string }) => {
      if (!/^[a-z0-9_]{1,50}$/.test(opts.instance)) {
        throw new EspfError('ESPF_USAGE', `--instance ${quoteArg(opts.instance)}: use lower-case letters, digits and '_' (at most 50)`);
      }
      if (opts.shard !== undefined && !/^(0|[1-9][0-9]?)$/.test(opts.shard)) {
        throw new EspfError('ESPF_USAGE', `--shard ${quoteArg(opts.shard)}: a shard number, 0 … 63`);
      }
      const { runService } = await import('../run/run-command.ts');
      await runService({ instance: opts.instance, shard: opts.shard === undefined ? undefined : Number(opts.shard), out: io.out, env: readEnv() });
    });

  const handler = group(program, 'handler', 'enable, disable, subscribe and unsubscribe handlers (espf.handlers, espf.subscriptions); set and show an http handler\'s settings, per environment too; check request steps');
  handler.addHelpText('after', `
Examples:
  espf handler sub EventSender Account/Blocked
  espf handler sub CustomerToAccountsDispatcher all
  espf handler enable EventSender      (needs a URL: espf handler set EventSender url=https://…)
  espf handler set EventSender --env 2 url=https://hss.brand2.example/events
  espf handler show EventSender
`);
  for (const action of ['enable', 'disable'] as const) {
    handler.command(action).argument('<handler>', 'a handler name (a row of espf.handlers)')
      .description(`espf.handlers.enabled = ${action === 'enable'}`)
      .addHelpText('after', action === 'enable'
        ? '\nAn http handler cannot be enabled while its espf.http_handlers.url list is empty.\n'
        : '')
      .action(async (name: string) => {
        const changed = await withDb('espf handler', (db) => setHandlerEnabled(db, name, action === 'enable'));
        io.out(`handler ${escapeTerminal(name)} ${action}d${changed ? '' : ' (no change)'}\n`);
      });
  }
  for (const action of ['sub', 'unsub'] as const) {
    handler.command(action).argument('<handler>', 'a handler name (a row of espf.handlers)')
      .argument('<type>', "an event type, or 'all': every type for an http handler, the types it consumes for a dispatcher")
      .description(action === 'sub'
        ? 'subscribe a handler to an event type (a row of espf.subscriptions)'
        : 'unsubscribe a handler from an event type')
      .addHelpText('after', action === 'sub'
        ? '\nA dispatcher can subscribe only to the types it consumes (espf.dispatcher_rules).\n'
        : '')
      .action(async (name: string, type: string) => {
        const n = await withDb('espf handler', (db) => setSubscription(db, name, type, action === 'sub'));
        io.out(`${escapeTerminal(name)}: ${n} subscription${n === 1 ? '' : 's'} ${action === 'sub' ? 'added' : 'removed'}\n`);
      });
  }

  registerHandlerCheck(handler, io);
  registerHandlerSettings(handler, io);

  const type = group(program, 'type', 'switch capture of event types on and off (espf.event_types.enabled)');
  type.addHelpText('after', `
Examples:
  espf type enable Account/Blocked
  espf type disable all
`);
  for (const action of ['enable', 'disable'] as const) {
    type.command(action).argument('<type>', "an event type (a row of espf.event_types), or 'all'")
      .description(`espf.event_types.enabled = ${action === 'enable'}`)
      .action(async (name: string) => {
        const n = await withDb('espf type', (db) => setTypeEnabled(db, name, action === 'enable'));
        io.out(`${n} event type${n === 1 ? '' : 's'} ${action}d\n`);
      });
  }

  program.command('matrix')
    .description("print the matrix: a row per event type, a column per handler ('+' subscribed, '.' can subscribe, ' ' cannot)")
    .addHelpText('after', '\nThe same as: SELECT * FROM espf.matrix\n')
    .action(async () => io.out(formatMatrix(await withDb('espf matrix', readMatrix)) + '\n'));

  registerStatusCommand(program, io);
  registerResendCommand(program, io);
  registerConsoleCommand(program, io, group);
  const rule = registerRuleCommand(program, io, group);
  registerBackfillCommand(program, io);
  const shards = registerShardsCommand(program, io, group);

  // A group's extra arguments reach its action (they are the unknown command). Set
  // last: subcommands inherit the setting when created, and they must refuse extras.
  handler.allowExcessArguments();
  type.allowExcessArguments();
  rule.allowExcessArguments();
  shards.allowExcessArguments();
  configureOutputs(program, io);
  return program;
}

/** Runs the CLI; returns the exit code. Never calls process.exit. */
export async function main(argv: readonly string[], io: Out = {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
}): Promise<number> {
  const program = buildProgram(io);
  try {
    if (argv.length <= 2) {
      program.outputHelp();
      return EXIT_OK;
    }
    await program.parseAsync([...argv]);
    return EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help, `espf help`: 0; everything else commander refuses is usage (it printed the line).
      if (['commander.helpDisplayed', 'commander.version', 'commander.help'].includes(err.code)) {
        return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
      }
      return EXIT_USAGE;
    }
    if (err instanceof EspfError && err.code === 'ESPF_USAGE') {
      io.err(`espf: ${escapeTerminal(oneLine(err))}\n`);
      return EXIT_USAGE;
    }
    io.err(`espf: ${escapeTerminal(oneLine(err))}\n`);
    return EXIT_FAILED;
  }
}
