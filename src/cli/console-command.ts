import { createInterface } from 'node:readline';
import { addConsoleUser, consoleUsers, removeConsoleUser, setConsoleEnabled, setConsoleUserPassword } from '../db/console.ts';
import type { Command } from 'commander';
import { hashPassword, MIN_PASSWORD_CHARS } from '../console/auth.ts';
import { readEnv } from '../config/env.ts';
import { EspfError, sqlState, SQLSTATE } from '../errors.ts';
import { withDb } from './with-db.ts';

type Out = { out: (s: string) => void; err: (s: string) => void };

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,62}$/;

/**
 * The password of `espf console user add|password`: ESPF_CONSOLE_PASSWORD, or
 * the first line of standard input (asked for, without echo, on a terminal).
 * Never an argument: arguments are visible to every user of the host.
 */
export async function readPassword(input: NodeJS.ReadStream = process.stdin, env = process.env): Promise<string> {
  let pw: string;
  if (env.ESPF_CONSOLE_PASSWORD !== undefined) {
    pw = env.ESPF_CONSOLE_PASSWORD;
  } else if (input.isTTY) {
    const rl = createInterface({ input, output: process.stderr, terminal: true });
    process.stderr.write('password: ');
    (rl as unknown as { _writeToOutput: (s: string) => void })._writeToOutput = () => undefined;
    pw = await new Promise<string>((resolve) => rl.once('line', resolve));
    rl.close();
    process.stderr.write('\n');
  } else {
    const chunks: Buffer[] = [];
    for await (const c of input) chunks.push(c as Buffer);
    pw = Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
  }
  if ([...pw].length < MIN_PASSWORD_CHARS) {
    throw new EspfError('ESPF_USAGE', `the password must have at least ${MIN_PASSWORD_CHARS} characters (give it on stdin or in ESPF_CONSOLE_PASSWORD)`);
  }
  if (pw.length > 1024) throw new EspfError('ESPF_USAGE', 'the password is longer than 1024 characters');
  return pw;
}

function checkName(name: string): void {
  if (!NAME.test(name)) {
    throw new EspfError('ESPF_USAGE', `user name '${name.slice(0, 70)}': use letters, digits, "_", ".", "@" or "-" (at most 63, starting with a letter or digit)`);
  }
}

function checkRole(role: string): 'viewer' | 'admin' {
  if (role !== 'viewer' && role !== 'admin') throw new EspfError('ESPF_USAGE', `--role '${role}': use viewer (reads) or admin (changes configuration, resends)`);
  return role;
}

/** `espf console …`: users of the web console, and switching it on and off (espf.console). */
export function registerConsoleCommand(program: Command, io: Out,
  group: (parent: Command, name: string, description: string) => Command): Command {
  const cmd = group(program, 'console', 'the web console of espf run under /console/: its users (espf.console_users) and switch (espf.console.enabled)')
    .addHelpText('after', `
Examples:
  espf console user add alice --role admin        (password on stdin, or in ESPF_CONSOLE_PASSWORD)
  espf console user add bob --role viewer
  espf console enable
  espf console user list

See docs/console.md.
`);
  const user = group(cmd, 'user', 'add, remove and list console users');
  user.command('add').argument('<name>', 'the user name')
    .requiredOption('--role <role>', 'viewer (reads) or admin (changes configuration, resends)')
    .description('add a user; the password comes from stdin or ESPF_CONSOLE_PASSWORD, never from an argument')
    .action(async (name: string, o: { role: string }) => {
      checkName(name);
      const role = checkRole(o.role);
      const hash = await hashPassword(await readPassword(), readEnv().consoleScryptN);
      await withDb('espf console', async (db) => {
        try {
          await addConsoleUser(db, name, role, hash);
        } catch (err) {
          if (sqlState(err) === SQLSTATE.uniqueViolation) {
            throw new EspfError('ESPF_USAGE', `console user ${name} already exists (espf console user password ${name} changes the password)`);
          }
          throw err;
        }
      });
      io.out(`console user ${name} added (${role})\n`);
    });
  user.command('password').argument('<name>', 'the user name')
    .option('--role <role>', 'also change the role: viewer or admin')
    .description('set a new password (stdin or ESPF_CONSOLE_PASSWORD); ends the user\'s sessions')
    .action(async (name: string, o: { role?: string }) => {
      const role = o.role === undefined ? null : checkRole(o.role);
      const hash = await hashPassword(await readPassword(), readEnv().consoleScryptN);
      const n = await withDb('espf console', (db) => setConsoleUserPassword(db, name, hash, role));
      if (!n) throw new EspfError('ESPF_USAGE', `no console user ${name} (see: espf console user list)`);
      io.out(`console user ${name}: password changed${role ? `, role ${role}` : ''}\n`);
    });
  user.command('remove').argument('<name>', 'the user name')
    .description('remove a user (and end their sessions)')
    .action(async (name: string) => {
      const removed = await withDb('espf console', (db) => removeConsoleUser(db, name));
      if (!removed) throw new EspfError('ESPF_USAGE', `no console user ${name} (see: espf console user list)`);
      io.out(`console user ${name} removed\n`);
    });
  user.command('list').description('list the users and their roles')
    .action(async () => {
      const rows = await withDb('espf console', (db) => consoleUsers(db));
      io.out(rows.length ? rows.map((r) => `${r.name}\t${r.role}\n`).join('') : 'no console users\n');
    });
  for (const action of ['enable', 'disable'] as const) {
    cmd.command(action).description(`espf.console.enabled = ${action === 'enable'}`)
      .action(async () => {
        await withDb('espf console', (db) => setConsoleEnabled(db, action === 'enable'));
        io.out(`console ${action}d: served by espf run at /console/ on ESPF_HTTP_PORT\n`);
      });
  }
  // A group's extra arguments reach its action (the unknown command); set after the subcommands.
  cmd.allowExcessArguments();
  user.allowExcessArguments();
  return cmd;
}
