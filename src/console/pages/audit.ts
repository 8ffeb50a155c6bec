import { html, when, type Html } from '../html.ts';
import { layout, type PageContext } from '../layout.ts';
import { send } from '../http.ts';
import * as store from '../store.ts';
import type { Route } from '../routes.ts';

/** Audit: the last changes made in the console (docs/console.md). */

type Row = Record<string, any>;

export const auditRoutes: readonly Route[] = [{
  path: '/console/audit', method: 'GET',
  async handle(r) {
    send(r.res, 200, auditPage(r.ctx, await store.recentAudit(r.deps.db, 200)));
  },
}];

export function auditPage(ctx: PageContext, rows: Row[]): Html {
  return layout(ctx, 'Audit', html`
<p class="muted">Every change made in the console (espf.console_audit): who, what, the row before and after. Secret values show as "(set)".</p>
<div class="scroll"><table><thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">What</th><th scope="col">Target</th><th scope="col">Before</th><th scope="col">After</th></tr></thead>
<tbody>${rows.map((r) => html`<tr><td>${when(r.at)}</td><td>${r.user_name}</td><td>${r.action}</td><td>${r.target}</td><td><code>${r.before ? JSON.stringify(r.before) : ''}</code></td><td><code>${r.after ? JSON.stringify(r.after) : ''}</code></td></tr>`)}</tbody></table></div>`);
}

