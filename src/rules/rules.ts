import type { Db } from '../db/connect.ts';
import { compiledRule, ruleRow, type RuleRow, type RuleSummary } from '../db/rules.ts';
import { EspfError } from '../errors.ts';

// `espf rule list` and `espf rule check` are the statements themselves.
export { checkRules, listRules, type RuleProblem, type RuleSummary } from '../db/rules.ts';

export interface RuleDetail extends RuleRow {
  /** The trigger function and trigger the rule compiles to, or why it does not compile. */
  readonly sql: string | null;
  readonly problem: string | null;
}

export async function readRule(db: Db, name: string): Promise<RuleDetail> {
  const row = await ruleRow(db, name);
  if (!row) {
    throw new EspfError('ESPF_UNKNOWN_RULE', `unknown rule '${name}' (espf rule list shows the rules)`);
  }
  let compiled: string | null = null;
  let problem: string | null = null;
  try {
    compiled = await compiledRule(db, name);
  } catch (err) {
    problem = (err as Error).message;
  }
  return { ...row, sql: compiled, problem };
}

/** Rules as an aligned table, one line each. */
export function formatRules(rules: readonly RuleSummary[]): string {
  const head = ['NAME', 'TYPE', 'TABLE', 'OPERATIONS', 'ENABLED', 'ORIGIN'];
  const rows = rules.map((r) => [
    r.name, r.event_type, r.source, r.operations.join(','), r.enabled ? (r.active ? 'yes' : 'yes (off)') : 'no',
    r.builtin ? (r.changed ? 'built-in, changed' : 'built-in') : 'local',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [head, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

export function formatRule(r: RuleDetail): string {
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
