import type { Db } from '../db/connect.ts';
import {
  compiledDispatcherRule, compiledRule, dispatcherRulesNamed, listDispatcherRules, listRules, ruleRow,
  type DispatcherRuleRow, type RuleRow, type RuleSummary,
} from '../db/rules.ts';
import { EspfError } from '../errors.ts';

// `espf rule check` and the capture rules' list are the statements themselves.
export { checkRules, listRules, type RuleProblem, type RuleSummary } from '../db/rules.ts';

export interface RuleDetail extends RuleRow {
  /** The trigger function and trigger the rule compiles to, or why it does not compile. */
  readonly sql: string | null;
  readonly problem: string | null;
}

export interface DispatcherRuleDetail extends DispatcherRuleRow {
  /** The function the rule compiles to, or why it does not compile. */
  readonly sql: string | null;
  readonly problem: string | null;
}

/** What `espf rule list` shows: the capture rules, then the dispatcher rules. */
export interface RuleList {
  readonly capture: readonly RuleSummary[];
  readonly dispatcher: readonly DispatcherRuleRow[];
}

export async function listAllRules(db: Db): Promise<RuleList> {
  return { capture: await listRules(db), dispatcher: await listDispatcherRules(db) };
}

/** The compiled SQL of a rule, or the database's reason it does not compile. */
async function compiled(f: () => Promise<string | null>): Promise<{ sql: string | null; problem: string | null }> {
  try {
    return { sql: await f(), problem: null };
  } catch (err) {
    return { sql: null, problem: (err as Error).message };
  }
}

/** The capture rule `name` (espf.event_rules) and what it compiles to. */
export async function readRule(db: Db, name: string): Promise<RuleDetail> {
  const row = await ruleRow(db, name);
  if (!row) throw unknownRule(name);
  return { ...row, ...await compiled(() => compiledRule(db, name)) };
}

/**
 * `espf rule show NAME`: the capture rule NAME, else the dispatcher rule NAME
 * ('<handler>: <event_type>'), else every rule of the dispatcher NAME.
 */
export async function readAnyRule(db: Db, name: string): Promise<RuleDetail | DispatcherRuleDetail[]> {
  if (await ruleRow(db, name)) return readRule(db, name);
  const rules = await dispatcherRulesNamed(db, name);
  if (rules.length === 0) throw unknownRule(name);
  const out: DispatcherRuleDetail[] = [];
  for (const r of rules) out.push({ ...r, ...await compiled(() => compiledDispatcherRule(db, r.handler, r.event_type)) });
  return out;
}

const unknownRule = (name: string) => new EspfError('ESPF_UNKNOWN_RULE', `unknown rule '${name}' (espf rule list shows the rules)`);

const origin = (r: { builtin: boolean; changed: boolean }, changedNote = 'built-in, changed'): string =>
  (r.builtin ? (r.changed ? changedNote : 'built-in') : 'local');

/** Rows of cells as an aligned table, the last column unpadded. */
function table(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [head, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

/** Rules as aligned tables, one line each: the capture rules, then (after a blank line) the dispatcher rules. */
export function formatRules(rules: RuleList): string {
  const capture = table(['NAME', 'TYPE', 'TABLE', 'OPERATIONS', 'ENABLED', 'ORIGIN'], rules.capture.map((r) => [
    r.name, r.event_type, r.source, r.operations.join(','), r.enabled ? (r.active ? 'yes' : 'yes (off)') : 'no', origin(r),
  ]));
  if (rules.dispatcher.length === 0) return capture;
  const dispatcher = table(['DISPATCHER RULE', 'DISPATCHER', 'CONSUMES', 'ENABLED', 'ORIGIN'], rules.dispatcher.map((r) => [
    r.name, r.handler, r.event_type, r.enabled ? 'yes' : 'no', origin(r),
  ]));
  return `${capture}\n\n${dispatcher}`;
}

export function formatRule(r: RuleDetail | readonly DispatcherRuleDetail[]): string {
  if (Array.isArray(r)) return (r as readonly DispatcherRuleDetail[]).map(formatDispatcherRule).join('\n\n');
  return formatCaptureRule(r as RuleDetail);
}

function formatDispatcherRule(r: DispatcherRuleDetail): string {
  const lines = [
    `name:        ${r.name}`,
    `dispatcher:  ${r.handler}`,
    `consumes:    ${r.event_type} (${r.enabled ? 'enabled and subscribed' : 'not subscribed, or the dispatcher is disabled'})`,
    `origin:      ${origin(r, 'built-in, changed by a DBA (espf migrate keeps it)')}`,
    `function:    espf.${r.function_name} ${r.compiled ? '' : '(missing: rewrite the row to compile it again)'}`.trimEnd(),
    'query:',
    ...r.query.split('\n').map((l) => `  ${l}`),
    '',
  ];
  if (r.sql) lines.push(r.sql.trimEnd());
  else lines.push(`does not compile: ${r.problem}`);
  return lines.join('\n');
}

function formatCaptureRule(r: RuleDetail): string {
  const lines = [
    `name:        ${r.name}`,
    `event_type:  ${r.event_type} (${r.enabled ? 'enabled' : 'disabled'})`,
    `source:      ${r.source}`,
    `operations:  ${r.operations.join(', ')}`,
    `watch:       ${r.watch ? r.watch.join(', ') : '(any column)'}`,
    `condition:   ${r.condition ?? '(always)'}`,
    `variables:   ${r.variables}`,
    `i_env:       ${r.i_env}`,
    `origin:      ${r.builtin ? (r.changed ? 'built-in, changed by a DBA (espf migrate keeps it)' : 'built-in') : 'local'}`,
    `trigger:     ${r.trigger_name} ${r.compiled ? (r.active ? '(on)' : '(disabled by hand)') : '(none: the type is disabled)'}`,
    '',
  ];
  if (r.sql) lines.push(r.sql.trimEnd());
  else lines.push(`does not compile: ${r.problem}`);
  return lines.join('\n');
}
