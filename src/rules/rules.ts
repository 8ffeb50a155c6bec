import { sql } from '@databases/pg';
import type { Db } from '../db/connect.ts';
import { EspfError } from '../errors.ts';

/** One rule as `espf rule list` shows it (espf.event_rule_status). */
export interface RuleSummary {
  readonly name: string;
  readonly event_type: string;
  readonly source: string;
  readonly operations: string[];
  readonly enabled: boolean;
  readonly builtin: boolean;
  readonly changed: boolean;
  readonly active: boolean;
}

export interface RuleDetail extends RuleSummary {
  readonly watch: string[] | null;
  readonly condition: string | null;
  readonly variables: string;
  readonly i_env: string;
  readonly trigger_name: string;
  readonly compiled: boolean;
  /** The trigger function and trigger the rule compiles to, or why it does not compile. */
  readonly sql: string | null;
  readonly problem: string | null;
}

export interface RuleProblem {
  readonly name: string;
  readonly problem: string;
  readonly code: string;
}

export async function listRules(db: Db): Promise<RuleSummary[]> {
  return db.query(sql`
    SELECT name, event_type, source::text AS source, operations, enabled, builtin, changed, active
      FROM espf.event_rule_status ORDER BY source::text, name`);
}

export async function readRule(db: Db, name: string): Promise<RuleDetail> {
  const [row] = await db.query(sql`
    SELECT name, event_type, source::text AS source, operations, watch, condition, variables, i_env,
           enabled, builtin, changed, active, compiled, trigger_name
      FROM espf.event_rule_status WHERE name = ${name}`);
  if (!row) {
    throw new EspfError('ESPF_UNKNOWN_RULE', `unknown rule '${name}' (espf rule list shows the rules)`);
  }
  // check_rule parses the expressions through a temporary view it drops again: nothing stays behind.
  let compiled: string | null = null;
  let problem: string | null = null;
  try {
    await db.tx(async (tx) => {
      const [r] = await tx.query(sql`SELECT espf.rule_sql(r, espf.check_rule(r)) AS s FROM espf.event_rules r WHERE r.name = ${name}`);
      compiled = r.s;
    });
  } catch (err) {
    problem = (err as Error).message;
  }
  return { ...row, sql: compiled, problem };
}

/** Checks every rule against its table again; changes nothing. */
export async function checkRules(db: Db): Promise<{ checked: number; problems: RuleProblem[] }> {
  return db.tx(async (tx) => {
    const [{ n }] = await tx.query(sql`SELECT count(*)::int AS n FROM espf.event_rules`);
    const problems: RuleProblem[] = await tx.query(sql`SELECT name, problem, code FROM espf.check_rules()`);
    return { checked: n as number, problems };
  });
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
