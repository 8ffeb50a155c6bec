import type { Command } from 'commander';
import { EspfError } from '../errors.ts';
import { checkRules, formatRule, formatRules, listAllRules, readAnyRule } from '../rules/rules.ts';
import { withDb } from './with-db.ts';

type Out = { out: (s: string) => void; err: (s: string) => void };

/** `espf rule list | show <name> | check` (espf.event_rules, espf.dispatcher_rules; docs/cli.md). */
export function registerRuleCommand(program: Command, io: Out, group: (parent: Command, name: string, description: string) => Command): Command {
  const rule = group(program, 'rule', 'list, show and check capture and dispatcher rules (espf.event_rules, espf.dispatcher_rules)');
  rule.addHelpText('after', `
Rules are rows of espf.event_rules (capture) and espf.dispatcher_rules
(dispatchers); write them with SQL (docs/rules.md, docs/dba.md).

Examples:
  espf rule list
  espf rule show Account/Blocked
  espf rule show 'CustomerToAccountsDispatcher: Customer/Blocked'
  espf rule show CustomerToAccountsDispatcher
  espf rule check
`);
  rule.command('list')
    .description('every rule: name, type, table, operations, enabled, built-in / changed / local; then the dispatcher rules')
    .action(async () => {
      const rules = await withDb('espf rule', listAllRules);
      io.out(`${formatRules(rules)}\n`);
    });
  rule.command('show').argument('<name>', 'a rule name (espf rule list), or a dispatcher for all its rules')
    .description('the rule and the trigger (or function) SQL it compiles to')
    .action(async (name: string) => {
      io.out(`${formatRule(await withDb('espf rule', (db) => readAnyRule(db, name)))}\n`);
    });
  rule.command('check')
    .description('compile every rule again against its table (changes nothing); exits 1 naming each rule that does not compile')
    .action(async () => {
      const r = await withDb('espf rule', checkRules);
      const checked = r.checked + r.dispatcherRules;
      if (r.problems.length === 0) {
        io.out(`${checked} rules compile\n`);
        return;
      }
      for (const p of r.problems) io.out(`${p.problem}\n`);
      throw new EspfError('ESPF_RULES_BROKEN',
        `${r.problems.length} of ${checked} rules do not compile: ${r.problems.map((p) => p.name).join(', ')}`);
    });
  return rule;
}
