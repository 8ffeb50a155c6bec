import { html, type Html } from '../html.ts';
import { layout, notice, type PageContext } from '../layout.ts';
import { pathName, Refusal, send } from '../http.ts';
import type { Route } from '../routes.ts';
import { listRules, readRule, type RuleDetail, type RuleProblem, type RuleSummary } from '../../rules/rules.ts';

/** What `espf rule check` found (espf.check_rules()). */
export interface RuleCheck { readonly checked: number; readonly problems: readonly RuleProblem[] }

/**
 * The check compiles every rule again (DDL on temporary views): the rules page
 * shares one check per instance for this long, so page views cannot run it
 * over and over.
 */
export const RULE_CHECK_TTL_MS = 60_000;
import { oneLine } from '../../errors.ts';

export const rulesRoutes: readonly Route[] = [{
  path: '/console/rules', method: 'GET',
  async handle(r) {
    const [rules, check] = await Promise.all([listRules(r.deps.db), r.deps.ruleCheck.get()]);
    send(r.res, 200, rulesPage(r.ctx, rules, check, r.deps.ruleCheck.at));
  },
}, {
  path: /^\/console\/rules\/(.+)$/, method: 'GET',
  async handle(r) {
    const name = pathName(r.params[0]!);
    try {
      return send(r.res, 200, rulePage(r.ctx, await readRule(r.deps.db, name)));
    } catch (err) {
      if ((err as { code?: string }).code === 'ESPF_UNKNOWN_RULE') throw new Refusal(404, oneLine(err));
      throw err;
    }
  },
}];

/** Event rules (espf.event_rules): the list with `espf rule check`'s result, and one rule with its compiled trigger. */
export function rulesPage(ctx: PageContext, rules: readonly RuleSummary[], check: RuleCheck, at: number | null): Html {
  const broken = new Map(check.problems.map((p) => [p.name, p.problem]));
  const when = at === null ? '' : ` (checked at ${new Date(at).toISOString().slice(11, 19)} UTC; at most once every ${RULE_CHECK_TTL_MS / 1000} s)`;
  return layout(ctx, 'Event rules', html`
${check.problems.length === 0
    ? html`<p class="notice ok" role="status">espf rule check: all ${check.checked} rules compile.${when}</p>`
    : notice('error', `espf rule check: ${check.problems.length} of ${check.checked} rules do not compile: ${check.problems.map((p) => p.name).join(', ')}.${when}`)}
<p class="muted">Capture rules are rows of espf.event_rules, each compiled into an AFTER ROW trigger on its table; change them with SQL (docs/dba.md). The same as <code>espf rule list</code> and <code>espf rule check</code>.</p>
<div class="scroll"><table>
<thead><tr><th scope="col">Rule</th><th scope="col">Event type</th><th scope="col">Table</th><th scope="col">Operations</th><th scope="col">Enabled</th><th scope="col">Origin</th><th scope="col">Check</th></tr></thead>
<tbody>${rules.map((r) => html`<tr class="${broken.has(r.name) ? 'bad' : ''}">
  <th scope="row"><a href="/console/rules/${encodeURIComponent(r.name)}">${r.name}</a></th><td>${r.event_type}</td><td>${r.source}</td>
  <td>${r.operations.join(', ')}</td><td>${r.enabled ? (r.active ? 'yes' : 'yes (trigger disabled by hand)') : 'no'}</td>
  <td>${r.builtin ? (r.changed ? 'built-in, changed' : 'built-in') : 'local'}</td>
  <td>${broken.get(r.name) ?? 'compiles'}</td></tr>`)}</tbody></table></div>`);
}

export function rulePage(ctx: PageContext, r: RuleDetail): Html {
  const row = (k: string, v: string) => html`<tr><th scope="row">${k}</th><td><code>${v}</code></td></tr>`;
  return layout(ctx, `Rule ${r.name}`, html`
<div class="scroll"><table><tbody>
${row('event type', `${r.event_type} (${r.enabled ? 'enabled' : 'disabled'})`)}
${row('table', r.source)}
${row('operations', r.operations.join(', '))}
${row('watch', r.watch ? r.watch.join(', ') : '(any column)')}
${row('condition', r.condition ?? '(always)')}
${row('variables', r.variables)}
${row('i_env', r.i_env)}
${row('origin', r.builtin ? (r.changed ? 'built-in, changed by a DBA (espf migrate keeps it)' : 'built-in') : 'local')}
${row('trigger', `${r.trigger_name} ${r.compiled ? (r.active ? '(on)' : '(disabled by hand)') : '(none: the type is disabled)'}`)}
</tbody></table></div>
<h2>Compiled trigger</h2>
${r.sql ? html`<pre class="sql">${r.sql}</pre>` : notice('error', `does not compile: ${r.problem}`)}
<p><a href="/console/rules">All rules</a></p>`);
}
