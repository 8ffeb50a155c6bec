import type { Command } from 'commander';
import type { Db } from '../db/connect.ts';
import { handlerNames, stepsOfHandlers, type StepRow } from '../db/config.ts';
import * as reports from '../db/reports.ts';
import { StepPlan } from '../delivery/steps/plan.ts';
import { EspfError } from '../errors.ts';
import { withDb } from './with-db.ts';
import { escapeTerminal, quoteArg } from '../security/terminal.ts';

type Out = { out: (s: string) => void; err: (s: string) => void };

/** What `espf status` reports: the views of sql/500_reports.sql, summarised. */
export interface StatusReport {
  /** Enabled handlers whose instance is not streaming, and the events waiting for them (espf.report_waiting_handlers). */
  readonly waiting_on_instances: Record<string, unknown>[];
  readonly backlog: Record<string, unknown>[];
  /** The circuit breaker of each target URL, as the instance serving its handler last reported it (espf.target_states). */
  readonly targets: Record<string, unknown>[];
  readonly failures_24h: Record<string, unknown>[];
  readonly latency_hourly: Record<string, unknown>[];
  readonly account_status: {
    readonly by_handler: Record<string, unknown>[];
    readonly not_ok: Record<string, unknown>[];
  };
  readonly backfills: Record<string, unknown>[];
  readonly superseded_24h: Record<string, unknown>[];
  /** Instances split into shards: one row per shard (espf.report_shards). */
  readonly shards: Record<string, unknown>[];
  /** Skipped: a handler with request steps has none for the type (docs/handlers.md, "Request steps"). */
  readonly skipped_24h: Record<string, unknown>[];
  /** Expressions of request steps that do not compile: their handler sends nothing, its deliveries wait. */
  readonly broken_steps: Record<string, unknown>[];
}

export interface StatusOptions {
  readonly hours: number;   // latency rows of the last `hours` hours
  readonly limit: number;   // accounts not OK listed at most
}

/** Reads the reports (espf.report_*). */
export async function readStatus(db: Db, opts: StatusOptions): Promise<StatusReport> {
  const [waiting, backlog, targets, failures, latency, byHandler, notOk, backfills, superseded, shards, skipped, broken] = await Promise.all([
    reports.waitingHandlers(db), reports.backlog(db), reports.targets(db), reports.failures24h(db), reports.latencyHourly(db, opts.hours),
    reports.accountStatusByHandler(db), reports.accountsNotOk(db, opts.limit), reports.recentBackfills(db),
    reports.superseded24h(db), reports.shards(db), reports.skipped24h(db), brokenSteps(db),
  ]);
  return { waiting_on_instances: waiting, backlog, targets, failures_24h: failures, latency_hourly: latency, account_status: { by_handler: byHandler, not_ok: notOk }, backfills, superseded_24h: superseded, shards, skipped_24h: skipped, broken_steps: broken };
}

/** Every expression of a request step that does not compile, as espf run compiles them (src/delivery/steps/plan.ts). */
async function brokenSteps(db: Db): Promise<Record<string, unknown>[]> {
  const rows = await stepsOfHandlers(db, await handlerNames(db));
  const byHandler = new Map<string, StepRow[]>();
  for (const r of rows) {
    let list = byHandler.get(r.handler);
    if (!list) byHandler.set(r.handler, list = []);
    list.push(r);
  }
  return [...byHandler.values()].flatMap((list) => StepPlan.compile(list).problems.map((p) => ({
    handler: p.handler, event_type: p.eventType, step: p.step, field: p.field, problem: p.message,
  })));
}

/** A plain text table: a header, a rule, a row per record. */
export function formatTable(rows: readonly Record<string, unknown>[], columns: readonly string[]): string {
  const cell = (v: unknown): string => {
    if (v === null || v === undefined) return '';
    if (v instanceof Date) return v.toISOString().replace(/\.\d{3}Z$/, 'Z');
    const s = typeof v === 'object' ? JSON.stringify(v) : String(v);
    const one = s.replace(/\s+/g, ' ');
    return escapeTerminal(one.length > 60 ? `${one.slice(0, 57)}...` : one);
  };
  const table = [columns.slice(), ...rows.map((r) => columns.map((c) => cell(r[c])))];
  const widths = columns.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(table[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...table.slice(1).map(line)].join('\n');
}

export function formatStatus(r: StatusReport, opts: StatusOptions): string {
  const section = (title: string, rows: readonly Record<string, unknown>[], cols: string[], empty: string) =>
    `${title}\n${rows.length ? formatTable(rows, cols) : `  ${empty}`}\n`;
  return [
    section('Handlers waiting on an instance that is not streaming (espf.report_waiting_handlers)', r.waiting_on_instances,
      ['handler', 'kind', 'instance', 'instance_state', 'last_streamed_at', 'waiting_events'], 'none: every enabled handler\'s instance is streaming'),
    section('Backlog per http handler (espf.report_backlog)', r.backlog,
      ['handler', 'enabled', 'instance', 'waiting', 'pending', 'retry', 'oldest_age_s', 'next_attempt_at'], 'no http handlers'),
    section('Targets: circuit breaker per URL and environment (espf.target_states; i_env empty: the default row; DOWN = only probed, deliveries wait)', r.targets,
      ['handler', 'i_env', 'url', 'state', 'since', 'for_s', 'probes', 'next_probe_at', 'last_http_status', 'last_error'], 'none tried yet'),
    section('Failures of the last 24 hours (espf.report_failures_24h)', r.failures_24h,
      ['event_type', 'handler', 'failures', 'accounts', 'last_failed_at', 'last_http_status', 'last_error'], 'none'),
    section(`Delivery latency, last ${opts.hours} h, seconds (espf.report_latency_hourly)`, r.latency_hourly,
      ['hour', 'handler', 'delivered', 'p50_s', 'p95_s', 'p99_s', 'max_s'], 'no deliveries'),
    section('Account status per handler (espf.report_account_status)', r.account_status.by_handler,
      ['handler', 'accounts', 'ok', 'in_progress', 'retry', 'failed', 'last_update'], 'no account statuses'),
    section(`Accounts not OK (latest ${opts.limit})`, r.account_status.not_ok,
      ['i_account', 'account_id', 'handler', 'status', 'event_type', 'attempts', 'message', 'updated_at'], 'none'),
    ...(r.broken_steps.length ? [section('Request steps that do not compile: the handler sends nothing, its deliveries wait (espf handler check)', r.broken_steps,
      ['handler', 'event_type', 'step', 'field', 'problem'], 'none')] : []),
    ...(r.skipped_24h.length ? [section('Skipped: no request steps for the type, last 24 hours (espf.http_steps)', r.skipped_24h,
      ['handler', 'event_type', 'skipped', 'last_at'], 'none')] : []),
    section('Superseded by a newer event of a coalescing type, last 24 hours (espf.event_types.coalesce)', r.superseded_24h,
      ['handler', 'event_type', 'superseded', 'last_at'], 'none'),
    section('Backfills, latest 10 (espf.report_backfills)', r.backfills.map((b) => ({ ...b, for: b.target_handler ?? 'all' })),
      ['id', 'rule', 'state', 'rows_done', 'rows_total', 'events', 'last_key', 'started_at', 'updated_at', 'for'], 'none'),
    ...(r.shards.length ? [section('Shards (espf.report_shards)', r.shards.map((s) => ({
      ...s, shard: `${String(s.instance)} ${String(s.shard)} of ${String(s.shards)}`, state: s.streaming ? 'streaming' : 'not streaming',
      waiting: `${String(s.waiting_events)} waiting`,
    })), ['shard', 'state', 'waiting', 'retry', 'lag_bytes', 'slot_name', 'last_error'], 'none')] : []),
  ].join('\n');
}

function positiveInt(name: string, max: number) {
  return (v: string): number => {
    if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > max) {
      throw new EspfError('ESPF_USAGE', `${name} ${quoteArg(v)}: use a whole number from 1 to ${max}`);
    }
    return Number(v);
  };
}

/** Registers `espf status` on the program. */
export function registerStatusCommand(program: Command, io: Out): Command {
  return program.command('status')
    .description('print a summary of the reports: backlog, targets, failures of the last 24 hours, latency per hour, account statuses')
    .option('--json', 'print JSON (for scripts) instead of tables')
    .option('--hours <n>', 'latency rows of the last n hours (1-720)', positiveInt('--hours', 720), 24)
    .option('--limit <n>', 'list at most n accounts that are not OK (1-10000)', positiveInt('--limit', 10_000), 20)
    .addHelpText('after', `
The reports are views of the espf schema (sql/500_reports.sql, sql/450_catch_up.sql);
query them directly for more: espf.report_waiting_handlers, espf.report_account_status,
espf.report_failures_24h, espf.report_latency_hourly, espf.report_backlog. The Targets section
is espf.target_states: the circuit breaker of each target URL (DOWN: only probed).

Examples:
  espf status
  espf status --json | jq '.backlog'
`)
    .action(async (o: { json?: boolean; hours: number; limit: number }) => {
      const opts = { hours: o.hours, limit: o.limit };
      const report = await withDb('espf status', (db) => readStatus(db, opts));
      io.out(o.json ? `${JSON.stringify(report, null, 2)}\n` : formatStatus(report, opts));
    });
}
