import type { Command } from 'commander';
import {
  deleteHttpHandlerEnv, handlerEnvs, HTTP_ENV_COLUMNS, HTTP_HANDLER_COLUMNS, readHttpHandler, readHttpHandlerEnv,
  setHttpHandlerColumns, setHttpHandlerEnvColumns,
} from '../db/config.ts';
import { EspfError } from '../errors.ts';
import { isEnvRef } from '../security/secret-ref.ts';
import { redactUrl } from '../security/redact.ts';
import { escapeTerminal, quoteArg } from '../security/terminal.ts';
import { withDb } from './with-db.ts';

type Out = { out: (s: string) => void; err: (s: string) => void };

/** Secret columns: `show` prints whether they are set (an env:NAME reference as it is), never their value. */
const SECRETS = new Set(['basic_auth_key', 'custom_auth_credentials', 'signature_auth_key']);

/** `--env N`: an i_env (a whole number >= 0), or null when not given. */
export function parseEnvOption(v: string | undefined): number | null {
  if (v === undefined) return null;
  if (!/^(0|[1-9][0-9]{0,8})$/.test(v)) throw new EspfError('ESPF_USAGE', `--env: ${quoteArg(v.slice(0, 40))} is not an i_env (a whole number >= 0)`);
  return Number(v);
}

/**
 * `column=value` arguments as the values of a row: `url` a comma-separated
 * list, an empty value null (in an environment's row: inherit the default).
 * Refuses an unknown column, a repeated one or an argument without "=".
 */
export function parseSettings(args: readonly string[], columns: readonly string[], table: string): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  for (const a of args) {
    const eq = a.indexOf('=');
    if (eq <= 0) throw new EspfError('ESPF_USAGE', `${quoteArg(a.slice(0, 60))} is not column=value`);
    const col = a.slice(0, eq);
    const raw = a.slice(eq + 1);
    if (!columns.includes(col)) throw new EspfError('ESPF_USAGE', `${quoteArg(col.slice(0, 60))} is not a column of ${table} one can set (${columns.join(', ')})`);
    if (col in values) throw new EspfError('ESPF_USAGE', `${col} is given twice`);
    values[col] = raw === '' ? null : col === 'url' ? raw.split(',').map((u) => u.trim()).filter(Boolean) : raw;
  }
  return values;
}

/** One column's value as `show` prints it: URLs without passwords, secrets as set or not. */
function shown(col: string, v: unknown): string {
  if (v === null || v === undefined) return '';
  if (SECRETS.has(col)) return typeof v === 'string' && isEnvRef(v) ? v : v === '' ? '' : '(set)';
  if (col === 'url' && Array.isArray(v)) return v.map((u) => redactUrl(String(u))).join(',');
  return typeof v === 'object' ? JSON.stringify(v) : String(v);
}

function table(rows: readonly (readonly string[])[]): string {
  const width = rows.reduce((w, r) => Math.max(w, r[0]!.length), 0);
  return rows.map((r) => `  ${r[0]!.padEnd(width)}  ${r.slice(1).join('  ')}`.trimEnd()).join('\n');
}

/**
 * `espf handler set NAME [--env N] column=value…`, `espf handler set NAME
 * --env N --reset` and `espf handler show NAME [--env N]`: an http handler's
 * settings (espf.http_handlers) and those of its environments
 * (espf.http_handler_envs; docs/handlers.md, "Settings per environment").
 * The CLI refuses bad arguments; the database refuses bad values.
 */
export function registerHandlerSettings(handler: Command, io: Out): void {
  handler.command('set').argument('<handler>', 'an http handler (a row of espf.http_handlers)')
    .argument('[settings...]', 'column=value: url=URL[,URL…], auth_method=Basic, token_rate=5, …; with --env an empty value (column=) inherits the default row')
    .option('--env <i_env>', 'set the settings of the events of this environment (a row of espf.http_handler_envs) instead of the default row')
    .option('--reset', 'with --env: drop the environment\'s row; its events use the default row again')
    .description('set columns of an http handler\'s settings, or of one environment\'s')
    .addHelpText('after', `
Examples:
  espf handler set EventSender url=https://hss.example/events token_rate=20
  espf handler set EventSender --env 2 url=https://hss.brand2.example/events auth_method=Basic basic_auth_user=espf basic_auth_key=env:ESPF_SECRET_BRAND2
  espf handler set EventSender --env 2 token_rate=      (inherit the default row's token_rate again)
  espf handler set EventSender --env 2 --reset
`)
    .action(async (name: string, settings: string[], opts: { env?: string; reset?: boolean }) => {
      const env = parseEnvOption(opts.env);
      const who = `handler ${escapeTerminal(name)}${env === null ? '' : ` i_env ${env}`}`;
      if (opts.reset) {
        if (env === null) throw new EspfError('ESPF_USAGE', '--reset needs --env N: the default row cannot be dropped');
        if (settings.length > 0) throw new EspfError('ESPF_USAGE', '--reset takes no column=value');
        const dropped = await withDb('espf handler set', (db) => deleteHttpHandlerEnv(db, name, env));
        io.out(`${who}: ${dropped ? 'settings dropped, its events use the default row' : 'had no settings of its own (no change)'}\n`);
        return;
      }
      if (settings.length === 0) throw new EspfError('ESPF_USAGE', 'nothing to set: give column=value (or --env N --reset)');
      const values = env === null
        ? parseSettings(settings, HTTP_HANDLER_COLUMNS, 'espf.http_handlers')
        : parseSettings(settings, HTTP_ENV_COLUMNS, 'espf.http_handler_envs');
      await withDb('espf handler set', async (db) => {
        if (env !== null) return setHttpHandlerEnvColumns(db, name, env, values);
        const row = await setHttpHandlerColumns(db, name, values);
        if (!row) throw new EspfError('ESPF_UNKNOWN_HANDLER', `no http handler ${quoteArg(name)} (a row of espf.http_handlers)`);
        return row;
      });
      io.out(`${who}: set ${Object.keys(values).join(', ')}\n`);
    });

  handler.command('show').argument('<handler>', 'an http handler (a row of espf.http_handlers)')
    .option('--env <i_env>', 'the settings the events of this environment are delivered with, and which are its own')
    .description('print an http handler\'s settings (secrets as set or not) and the environments with settings of their own')
    .action(async (name: string, opts: { env?: string }) => {
      const env = parseEnvOption(opts.env);
      const text = await withDb('espf handler show', async (db) => {
        const row = await readHttpHandler(db, name);
        if (!row) throw new EspfError('ESPF_UNKNOWN_HANDLER', `no http handler ${quoteArg(name)} (a row of espf.http_handlers)`);
        if (env === null) {
          const envs = await handlerEnvs(db, name);
          return `handler ${name} (default row, espf.http_handlers; ${row.enabled ? 'enabled' : 'disabled'}, instance ${String(row.instance)})\n`
            + `${table(HTTP_HANDLER_COLUMNS.map((c) => [c, shown(c, row[c])]))}\n`
            + `environments with settings of their own: ${envs.length ? envs.join(', ') : 'none'}${envs.length ? ` (espf handler show ${name} --env N)` : ''}\n`;
        }
        const e = await readHttpHandlerEnv(db, name, env);
        if (!e) return `handler ${name} i_env ${env}: no settings of its own; its events use the default row (espf handler show ${name})\n`;
        return `handler ${name} i_env ${env} (espf.http_handler_envs; "default": inherited from the default row)\n`
          + `${table(HTTP_ENV_COLUMNS.map((c) => [c, shown(c, e.merged[c]), e.own[c] === null || e.own[c] === undefined ? '(default)' : '']))}\n`;
      });
      io.out(text.split('\n').map(escapeTerminal).join('\n'));
    });
}
