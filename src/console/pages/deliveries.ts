import { html, when, type Html } from '../html.ts';
import { answer, canChange, csrfField, doneMessage, layout, notice, stateBadge, type PageContext } from '../layout.ts';
import { parseKeys, redirect, Refusal, send } from '../http.ts';
import * as store from '../store.ts';
import { STATES, type DeliveryFilter } from '../store.ts';
import type { Db } from '../../db/connect.ts';
import { oneLine, sqlState } from '../../errors.ts';
import type { Route } from '../routes.ts';
import { isNarrow, resend } from '../../cli/resend-command.ts';
import { selectionOf } from '../resend-jobs.ts';

/** Why "Resend all matching" was refused: the filter could match every delivery ever made. */
export const NOT_NARROW = 'refused: "Resend all matching" needs a narrower filter: state FAILED, or a handler and a "Created from" time (nothing was re-queued)';

/** Deliveries and failures: filter, page, resend selected or all matching (docs/console.md). */

type Row = Record<string, any>;
const PAGE_SIZE = 50;

export const deliveriesRoutes: readonly Route[] = [{
  path: '/console/deliveries', method: 'GET',
  async handle(r) {
    const { db } = r.deps;
    const { filter, error, errorField } = await readFilter(db, r.query);
    const after = parseKeys([r.query.get('after') ?? ''])[0] ?? null;
    const rows = error ? [] : await store.deliveries(db, filter, after, PAGE_SIZE);
    let next: string | null = null;
    if (rows.length === PAGE_SIZE) {
      const q = new URLSearchParams(Object.entries(filter).filter(([, v]) => v) as [string, string][]);
      const last = rows[rows.length - 1]!;
      q.set('after', `${last.i_event}|${last.handler}`);
      next = `/console/deliveries?${q}`;
    }
    send(r.res, error ? 422 : 200, deliveriesPage(r.ctx, filter, await store.names(db), rows, next,
      { ok: doneMessage(r.query), error, errorField }));
  },
}, {
  path: '/console/deliveries/resend', method: 'POST',
  async handle(r) {
    const { db } = r.deps;
    const fq = new URLSearchParams();
    for (const [k, v] of r.form) if (k.startsWith('f_')) fq.set(k.slice(2), v);
    const back = `/console/deliveries?${fq}`;
    const mode = r.form.get('mode');
    if (mode === 'all' || mode === 'confirm') {
      const { filter, error } = await readFilter(db, fq);
      if (error) throw new Refusal(422, error);
      const sel = selectionOf(filter);
      if (!isNarrow(sel)) throw new Refusal(422, NOT_NARROW);
      const running = r.deps.jobs.running();
      if (running) return redirect(r.res, `/console/jobs/${running.id}`);
      const cap = r.settings.resend_max_rows;
      const { selected } = await resend(db, sel, { batch: 1, dryRun: true });
      const confirmed = Number(r.form.get('count'));
      if (mode === 'all' || !(Number.isSafeInteger(confirmed) && selected <= confirmed)) {
        const changed = mode === 'confirm' ? `The count changed to ${selected} since you confirmed ${r.form.get('count')}: confirm again.` : null;
        return send(r.res, 200, confirmPage(r.ctx, filter, fq, selected, cap, back, changed));
      }
      if (selected === 0) return redirect(r.res, `${back}&done=resend&n=0`);
      const job = await r.deps.jobs.start(r.session.user, filter, back, selected, cap);
      return redirect(r.res, `/console/jobs/${job.id}`);
    }
    const n = await store.resend(db, r.session.user, parseKeys(r.form.getAll('key')));
    redirect(r.res, `${back}&done=resend&n=${n}`);
  },
}];

/** The filter of the page (or of a resend of all matching), checked: a state espf knows, times PostgreSQL reads. */
export async function readFilter(db: Db, q: URLSearchParams): Promise<{ filter: DeliveryFilter; error: string | null; errorField: string | null }> {
  const pick = (k: string) => { const v = (q.get(k) ?? '').trim(); return v ? v.slice(0, 200) : undefined; };
  const filter: DeliveryFilter = { handler: pick('handler'), type: pick('type'), state: pick('state'), since: pick('since'), until: pick('until') };
  if (filter.state && !(STATES as readonly string[]).includes(filter.state)) {
    return { filter, error: `state ${JSON.stringify(filter.state)} is not one of ${STATES.join(', ')}`, errorField: 'state' };
  }
  for (const k of ['since', 'until'] as const) {
    const v = filter[k];
    if (!v) continue;
    try {
      await store.checkTimestamp(db, v);
    } catch (err) {
      if (sqlState(err) === undefined) throw err;
      return { filter, error: `${k}: ${oneLine(err)}`, errorField: k };
    }
  }
  return { filter, error: null, errorField: null };
}

export function deliveriesPage(ctx: PageContext, f: DeliveryFilter, names: { handlers: { name: string }[]; types: string[] }, rows: Row[], next: string | null, msg: { ok?: string | null; error?: string | null; errorField?: string | null }): Html {
  const admin = canChange(ctx);
  const sel = (list: readonly string[], v: string | undefined) => list.map((x) => html`<option${x === v ? html` selected` : ''}>${x}</option>`);
  const qs = new URLSearchParams(Object.entries(f).filter(([, v]) => v) as [string, string][]);
  const fieldErr = (name: string) => (msg.errorField === name ? html` aria-invalid="true" class="invalid"` : '');
  return layout(ctx, 'Deliveries', html`
${notice('ok', msg.ok)}${notice('error', msg.error)}
<form method="get" action="/console/deliveries" class="filters" aria-label="Filter deliveries">
  <label for="handler">Handler<select id="handler" name="handler"><option value="">any</option>${sel(names.handlers.map((h) => h.name), f.handler)}</select></label>
  <label for="type">Event type<select id="type" name="type"><option value="">any</option>${sel(names.types, f.type)}</select></label>
  <label for="state">State<select id="state" name="state"><option value="">any</option>${sel(STATES, f.state)}</select></label>
  <label for="since">Created from (UTC)<input id="since" name="since" type="datetime-local" value="${f.since ?? ''}"${fieldErr('since')}></label>
  <label for="until">to (UTC)<input id="until" name="until" type="datetime-local" value="${f.until ?? ''}"${fieldErr('until')}></label>
  <button type="submit" class="primary">Filter</button>
  <a href="/console/deliveries?state=FAILED">Failures</a>
</form>
<form method="post" action="/console/deliveries/resend">${csrfField(ctx)}
${[...qs].map(([k, v]) => html`<input type="hidden" name="${`f_${k}`}" value="${v}">`)}
<p><button type="submit" name="mode" value="selected"${admin ? '' : html` disabled`}>Resend selected</button>
   <button type="submit" name="mode" value="all"${admin ? '' : html` disabled`}>Resend all matching (finished ones)</button>
   <span class="muted">Only finished deliveries (DELIVERED, FAILED) are re-queued, with espf.resend. All matching needs state FAILED, or a handler and a "Created from" time; you confirm the count first.</span></p>
<div class="scroll"><table>
<thead><tr><th scope="col"><input type="checkbox" data-select-all aria-label="Select every row of this page"></th><th scope="col">Event</th><th scope="col">Handler</th><th scope="col">State</th><th scope="col">Account</th><th scope="col" class="num">Attempts</th><th scope="col">Last answer</th><th scope="col">Created</th><th scope="col">Finished</th></tr></thead>
<tbody>${rows.map((r) => html`<tr class="${r.state === 'FAILED' || r.state === 'RETRY' ? 'bad' : ''}">
  <td>${r.state === 'FAILED' || r.state === 'DELIVERED' ? html`<input type="checkbox" name="key" value="${`${r.i_event}|${r.handler}`}" aria-label="${`Select event ${r.i_event} for ${r.handler}`}">` : ''}</td>
  <td>${r.i_event} ${r.event_type}</td><td>${r.handler}</td><td>${stateBadge(r.state)}</td>
  <td>${r.i_account ? html`<a href="/console/subscribers/${r.i_account}">${r.i_account}</a>` : ''}</td>
  <td class="num">${r.attempts}</td><td>${answer(r.last_http_status, r.last_error)}</td>
  <td>${when(r.created_at)}</td><td>${when(r.finished_at)}</td></tr>`)}</tbody></table></div>
</form>
${rows.length === 0 ? html`<p role="status">Nothing matches.</p>` : ''}
${next ? html`<p><a href="${next}" rel="next">Next page →</a></p>` : ''}`);
}


/** "Resend all matching": the count, the cap, and a button that confirms them. */
export function confirmPage(ctx: PageContext, f: DeliveryFilter, fq: URLSearchParams, count: number, cap: number, back: string, changed: string | null): Html {
  const described = Object.entries(f).filter(([, v]) => v).map(([k, v]) => `${k} ${v}`).join(', ');
  const n = Math.min(count, cap);
  return layout(ctx, 'Resend all matching', html`
${notice('error', changed)}
<p role="status"><b>${count}</b> finished ${count === 1 ? 'delivery matches' : 'deliveries match'} ${described}.</p>
${count > cap ? html`<p class="bad">One job re-queues at most ${cap} (espf.console.resend_max_rows), the lowest i_event first; start another for the rest.</p>` : ''}
${count === 0 ? html`<p>Nothing to re-queue.</p><p><a href="${back}">Back to the deliveries</a></p>` : html`
<form method="post" action="/console/deliveries/resend">${csrfField(ctx)}
${[...fq].map(([k, v]) => html`<input type="hidden" name="${`f_${k}`}" value="${v}">`)}
<input type="hidden" name="count" value="${count}">
<p><button class="primary" type="submit" name="mode" value="confirm">${`Re-queue ${n} ${n === 1 ? 'delivery' : 'deliveries'}`}</button> <a href="${back}">Cancel</a></p>
<p class="muted">Each is sent again to its receiver by the instance serving its handler. You can cancel the job while it runs.</p>
</form>`}`);
}
