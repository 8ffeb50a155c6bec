import { html, when, type Html } from '../html.ts';
import { answer, canChange, csrfField, doneMessage, layout, notice, stateBadge, type PageContext } from '../layout.ts';
import { parseKeys, redirect, safeNext, send } from '../http.ts';
import * as store from '../store.ts';
import type { Route } from '../routes.ts';
import { readAttempts, type LoggedAttempt } from '../../log/logger.ts';
import { redactUrl } from '../../security/redact.ts';

/** Subscribers: find an account, its statuses, timeline and attempts; resend one delivery (docs/console.md). */

type Row = Record<string, any>;

export const subscriberRoutes: readonly Route[] = [{
  path: '/console/subscribers', method: 'GET',
  async handle(r) {
    const q = (r.query.get('q') ?? '').trim().slice(0, 200);
    if (!q) return send(r.res, 200, subscriberSearchPage(r.ctx, '', null));
    const found = await store.findAccounts(r.deps.db, q);
    if (found.length === 1) return redirect(r.res, `/console/subscribers/${found[0]!.i_account}`);
    send(r.res, 200, subscriberSearchPage(r.ctx, q, found));
  },
}, {
  path: /^\/console\/subscribers\/(\d{1,15})$/, method: 'GET',
  async handle(r) {
    const iAccount = Number(r.params[0]);
    const [d, attempts] = await Promise.all([store.accountTimeline(r.deps.db, iAccount), readAttempts(r.deps.logDir, iAccount)]);
    send(r.res, 200, subscriberPage(r.ctx, d, iAccount, attempts, { ok: doneMessage(r.query), error: null }));
  },
}, {
  path: '/console/resend', method: 'POST',
  async handle(r) {
    const keys = parseKeys(r.form.getAll('key'));
    const back = safeNext(r.form.get('back'));
    const n = await store.resend(r.deps.db, r.session.user, keys);
    redirect(r.res, `${back}${back.includes('?') ? '&' : '?'}done=resend&n=${n}`);
  },
}];

export function subscriberSearchPage(ctx: PageContext, q: string, found: Row[] | null): Html {
  return layout(ctx, 'Subscribers', html`
<form method="get" action="/console/subscribers" class="filters" role="search">
  <label for="q">i_account, account id or i_customer<input id="q" name="q" value="${q}" required></label>
  <button type="submit" class="primary">Find</button>
</form>
${found === null ? '' : found.length === 0 ? html`<p role="status">No account matches ${JSON.stringify(q)}.</p>` : html`
<div class="scroll"><table><thead><tr><th scope="col">i_account</th><th scope="col">id</th><th scope="col">Customer</th><th scope="col">Blocked</th></tr></thead>
<tbody>${found.map((a) => html`<tr><td><a href="/console/subscribers/${a.i_account}">${a.i_account}</a></td><td>${a.id}</td><td>${a.customer} (${a.i_customer})</td><td>${a.blocked ? 'yes' : 'no'}</td></tr>`)}</tbody></table></div>`}`);
}

export function subscriberPage(ctx: PageContext, d: { account: Row | null; deliveries: Row[]; statuses: Row[] }, iAccount: number, attempts: readonly LoggedAttempt[], msg: { ok?: string | null; error?: string | null }): Html {
  const admin = canChange(ctx);
  const a = d.account;
  return layout(ctx, a ? `Subscriber ${a.id}` : `Subscriber ${iAccount}`, html`
${notice('ok', msg.ok)}${notice('error', msg.error)}
${a ? html`<p>i_account <b>${a.i_account}</b>, id <b>${a.id}</b>, customer ${a.customer} (${a.i_customer}), product ${a.product} (${a.i_product})${a.blocked ? html`, <span class="bad">blocked</span>` : ''}.</p>`
    : html`<p class="muted">No billing.account row with i_account ${iAccount} (deleted?): what espf recorded for it follows.</p>`}
<h2>Provisioning status</h2>
${d.statuses.length === 0 ? html`<p class="muted">No row in espf.account_provisioning_statuses.</p>` : html`<div class="scroll"><table>
<thead><tr><th scope="col">Handler / group</th><th scope="col">Status</th><th scope="col">Event</th><th scope="col" class="num">Attempts</th><th scope="col">Message</th><th scope="col">Updated</th></tr></thead>
<tbody>${d.statuses.map((s) => html`<tr><th scope="row">${s.handler}</th><td>${stateBadge(s.status)}</td><td>${s.i_event ?? ''} ${s.event_type ?? ''}</td><td class="num">${s.attempts}</td><td>${s.message}</td><td>${when(s.updated_at)}</td></tr>`)}</tbody></table></div>`}
<h2>Timeline</h2>
<p class="muted">Newest first: each event of the account and its delivery to each handler (espf.event_deliveries keeps the last attempt; every attempt this instance made is below, from its provisioning.log).</p>
<div class="scroll"><table>
<thead><tr><th scope="col">Event</th><th scope="col">Committed</th><th scope="col">Handler</th><th scope="col">State</th><th scope="col" class="num">Attempts</th><th scope="col">Last answer</th><th scope="col">Last attempt</th><th scope="col">Finished</th><th scope="col">Resend</th></tr></thead>
<tbody>${d.deliveries.map((r) => html`<tr class="${r.state === 'FAILED' || r.state === 'RETRY' ? 'bad' : ''}" data-delivery="${`${r.i_event}|${r.handler}`}">
  <td>${r.i_event} ${r.event_type}${r.source_i_event ? html`<div class="muted">from event ${r.source_i_event}</div>` : ''}</td>
  <td>${when(r.committed_at ?? r.created_at)}</td><td>${r.handler}</td><td>${stateBadge(r.state)}</td><td class="num">${r.attempts}</td>
  <td>${answer(r.last_http_status, r.last_error)}${r.state === 'RETRY' && r.next_attempt_at ? html`<div class="muted">next attempt ${when(r.next_attempt_at)}</div>` : ''}</td>
  <td>${when(r.last_attempt_at)}</td><td>${when(r.finished_at)}</td>
  <td>${r.state === 'FAILED' || r.state === 'DELIVERED' ? html`<form method="post" action="/console/resend">${csrfField(ctx)}<input type="hidden" name="key" value="${`${r.i_event}|${r.handler}`}"><input type="hidden" name="back" value="/console/subscribers/${iAccount}"><button type="submit"${admin ? '' : html` disabled`} aria-label="${`Resend event ${r.i_event} to ${r.handler}`}">Resend</button></form>` : ''}</td>
</tr>`)}</tbody></table></div>
${attempts.length ? html`<h2>Attempts (provisioning.log of this instance)</h2><div class="scroll"><table>
<thead><tr><th scope="col">Time</th><th scope="col">Event</th><th scope="col">Handler</th><th scope="col">URL</th><th scope="col" class="num">Attempt</th><th scope="col">Answer</th><th scope="col" class="num">ms</th></tr></thead>
<tbody>${attempts.map((t) => html`<tr class="${t.status !== null && t.status >= 200 && t.status < 300 ? '' : 'bad'}"><td>${when(t.time)}</td><td>${t.i_event} ${t.event_type}</td><td>${t.handler}</td><td>${redactUrl(t.url)}</td><td class="num">${t.attempt}</td><td>${answer(t.status, t.error)}</td><td class="num">${t.duration_ms}</td></tr>`)}</tbody></table></div>` : ''}`);
}

