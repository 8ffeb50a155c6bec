// Event rules: espf.event_rules, the espf.event_rule_status view and the rule
// functions of sql/025_event_rules.sql, and the dispatcher rules
// (espf.dispatcher_rules, sql/200_dispatchers.sql), for `espf rule`
// (src/rules/rules.ts) and `espf migrate` (src/migrate/migrate.ts).
import { sql, type Queryable } from '@databases/pg';

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

/** A rule's row of espf.event_rule_status with its expressions. */
export interface RuleRow extends RuleSummary {
  readonly watch: string[] | null;
  readonly condition: string | null;
  readonly variables: string;
  readonly i_env: string;
  readonly trigger_name: string;
  readonly compiled: boolean;
}

export interface RuleProblem {
  readonly name: string;
  readonly problem: string;
  readonly code: string;
}

export function listRules(db: Queryable): Promise<RuleSummary[]> {
  return db.query(sql`
    SELECT name, event_type, source::text AS source, operations, enabled, builtin, changed, active
      FROM espf.event_rule_status ORDER BY source::text, name`);
}

export async function ruleRow(db: Queryable, name: string): Promise<RuleRow | undefined> {
  const [row] = await db.query(sql`
    SELECT name, event_type, source::text AS source, operations, watch, condition, variables, i_env,
           enabled, builtin, changed, active, compiled, trigger_name
      FROM espf.event_rule_status WHERE name = ${name}`);
  return row;
}

/**
 * The trigger function and trigger a rule compiles to (espf.rule_sql after
 * espf.check_rule, in a transaction: the check parses the expressions through
 * a temporary view it drops again). Throws the database's error when it does
 * not compile; null for no such rule.
 */
export function compiledRule(db: Queryable, name: string): Promise<string | null> {
  return db.tx(async (tx) => {
    const [r] = await tx.query(sql`SELECT espf.rule_sql(r, espf.check_rule(r)) AS s FROM espf.event_rules r WHERE r.name = ${name}`);
    return (r?.s as string | undefined) ?? null;
  });
}

/** One dispatcher rule (a row of espf.dispatcher_rules) as `espf rule list` and `show` give it. */
export interface DispatcherRuleRow {
  /** '<handler>: <event_type>' (espf.dispatcher_rule_name). */
  readonly name: string;
  readonly handler: string;
  readonly event_type: string;
  readonly query: string;
  /** The dispatcher is enabled and subscribed to the type. */
  readonly enabled: boolean;
  readonly builtin: boolean;
  readonly changed: boolean;
  /** Its function (espf.dispatch_<slug>) exists. */
  readonly compiled: boolean;
  readonly function_name: string;
}

const DISPATCHER_RULES = sql`
  SELECT espf.dispatcher_rule_name(r.handler, r.event_type) AS name, r.handler, r.event_type, r.query,
         h.enabled AND EXISTS (SELECT 1 FROM espf.subscriptions s WHERE s.handler = r.handler AND s.event_type = r.event_type) AS enabled,
         r.shipped_query IS NOT NULL AS builtin, r.shipped_query IS NOT NULL AND r.query <> r.shipped_query AS changed,
         to_regprocedure(format('espf.%I(bigint[])', espf.dispatcher_function_name(r.handler, r.event_type))) IS NOT NULL AS compiled,
         espf.dispatcher_function_name(r.handler, r.event_type) AS function_name
    FROM espf.dispatcher_rules r JOIN espf.handlers h ON h.name = r.handler`;

export function listDispatcherRules(db: Queryable): Promise<DispatcherRuleRow[]> {
  return db.query(sql`${DISPATCHER_RULES} ORDER BY r.handler, r.event_type`);
}

/** The rules named `name`: the one rule '<handler>: <event_type>', or every rule of the dispatcher `name`. */
export function dispatcherRulesNamed(db: Queryable, name: string): Promise<DispatcherRuleRow[]> {
  return db.query(sql`${DISPATCHER_RULES}
    WHERE espf.dispatcher_rule_name(r.handler, r.event_type) = ${name} OR r.handler = ${name}
    ORDER BY r.handler, r.event_type`);
}

/** The function a dispatcher rule compiles to (espf.dispatcher_rule_sql after its check); throws the database's error when it does not compile. */
export function compiledDispatcherRule(db: Queryable, handler: string, eventType: string): Promise<string | null> {
  return db.tx(async (tx) => {
    const [r] = await tx.query(sql`
      SELECT espf.dispatcher_rule_sql(r) AS s FROM espf.dispatcher_rules r, LATERAL espf.check_dispatcher_rule(r) c
       WHERE r.handler = ${handler} AND r.event_type = ${eventType}`);
    return (r?.s as string | undefined) ?? null;
  });
}

/**
 * Checks every capture and dispatcher rule again (espf.check_rules); changes
 * nothing. `checked` counts the capture rules, `dispatcherRules` the dispatcher
 * rules; `problems` holds both kinds.
 */
export function checkRules(db: Queryable): Promise<{ checked: number; dispatcherRules: number; problems: RuleProblem[] }> {
  return db.tx(async (tx) => {
    const [{ n, d }] = await tx.query(sql`SELECT (SELECT count(*)::int FROM espf.event_rules) AS n, (SELECT count(*)::int FROM espf.dispatcher_rules) AS d`);
    const problems: RuleProblem[] = await tx.query(sql`SELECT name, problem, code FROM espf.check_rules()`);
    return { checked: Number(n), dispatcherRules: Number(d), problems };
  });
}

/**
 * Built-in capture and dispatcher rules a DBA changed (sql/100_builtin_rules.sql and
 * sql/200_dispatchers.sql keep them as they are); none before the rules exist.
 */
export async function changedBuiltinRules(db: Queryable): Promise<string[]> {
  const [{ rules, dispatchers }] = await db.query(sql`
    SELECT to_regclass('espf.event_rule_status') IS NOT NULL AS rules,
           EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('espf.dispatcher_rules') AND attname = 'shipped_query') AS dispatchers`);
  const names: string[] = [];
  if (rules) names.push(...(await db.query(sql`SELECT name FROM espf.event_rule_status WHERE changed ORDER BY name`)).map((r) => r.name as string));
  if (dispatchers) {
    names.push(...(await db.query(sql`
      SELECT espf.dispatcher_rule_name(handler, event_type) AS name FROM espf.dispatcher_rules
       WHERE shipped_query IS NOT NULL AND query <> shipped_query ORDER BY handler, event_type`)).map((r) => r.name as string));
  }
  return names;
}
