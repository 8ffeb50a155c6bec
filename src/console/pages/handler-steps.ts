import { html, type Html } from '../html.ts';
import { describeProblem, StepPlan, type StepRow } from '../../delivery/steps/plan.ts';

/**
 * The read-only section "Request steps" of an http handler's page: its rows of
 * espf.http_steps per event type, as stored (an `env:NAME` header value shows
 * as the reference, never its value), and what StepPlan.compile says of them,
 * the check of `espf handler check` without its dry run (docs/console.md).
 */
export function stepsSection(rows: readonly StepRow[]): Html {
  if (rows.length === 0) return html`<h2>Request steps</h2>
<p>No request steps: the EventSender body (docs/handlers.md)</p>`;
  const plan = StepPlan.compile(rows);
  const byType = new Map<string, StepRow[]>();
  for (const r of [...rows].sort((a, b) => a.event_type.localeCompare(b.event_type) || a.step - b.step)) {
    let g = byType.get(r.event_type);
    if (!g) byType.set(r.event_type, g = []);
    g.push(r);
  }
  const check = plan.problems.length === 0
    ? html`<p class="good">all steps compile</p>`
    : html`<ul class="bad">${plan.problems.map((p) => html`<li>${describeProblem(p)}</li>`)}</ul>`;
  return html`<h2>Request steps</h2>
<p class="muted">Rows of <code>espf.http_steps</code> (docs/handlers.md, "Request steps"); change them with SQL. The check is that of <code>espf handler check</code>, without the dry run.</p>
${check}
${[...byType].map(([type, steps]) => html`<h3>${type === '*' ? '* (every type without steps of its own)' : type}</h3>
<div class="scroll"><table><thead><tr><th scope="col" class="num">Step</th><th scope="col">Method</th><th scope="col">Path</th><th scope="col">Headers</th><th scope="col">Body</th><th scope="col">Success rules</th></tr></thead>
<tbody>${steps.map(stepRow)}</tbody></table></div>`)}`;
}

function stepRow(r: StepRow): Html {
  const headers = Object.entries(r.headers ?? {}).sort(([a], [b]) => a.localeCompare(b));
  const rules = ([['refuse_when', r.refuse_when], ['exists_when', r.exists_when]] as const).filter(([, text]) => text !== null);
  return html`<tr><td class="num">${r.step}${r.name ? html` <span class="muted">(${r.name})</span>` : ''}</td><td>${r.method}</td><td><code>${r.path}</code></td>
<td>${headers.length ? headers.map(([k, v]) => html`<div><code>${k}: ${String(v)}</code></div>`) : html`<span class="muted">none</span>`}</td>
<td>${r.body === null ? html`<span class="muted">none</span>` : html`<code>${r.body}</code>`}${r.body !== null && r.content_type !== 'application/json' ? html` <span class="muted">(${r.content_type})</span>` : ''}</td>
<td><div>success_when: ${r.success_when === null ? html`<span class="muted">any 2xx</span>` : html`<code>${r.success_when}</code>`}</div>${rules.map(([k, text]) => html`<div>${k}: <code>${text}</code></div>`)}</td></tr>`;
}
