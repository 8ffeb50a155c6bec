import { age, html, sparkline, when, type Html } from './html.ts';
import { canChange, csrfField, layout, notice, type PageContext } from './layout.ts';
import { HTTP_FIELDS } from './fields.ts';
import { STATES, type DeliveryFilter } from './store.ts';
import type { TestAnswer } from './test-event.ts';
import type { Matrix } from '../config/handlers.ts';
import { isEnvRef } from '../security/secret-ref.ts';

type Row = Record<string, any>;

export function loginPage(error: string | null, next: string, user = ''): Html {
  return layout({ session: null, path: '/console/login' }, 'Log in', html`
<form method="post" action="/console/login" class="login">
  ${notice('error', error)}
  <input type="hidden" name="next" value="${next}">
  <label for="user">User</label>
  <input id="user" name="user" autocomplete="username" required value="${user}" autofocus>
  <label for="password">Password</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required>
  <button class="primary" type="submit">Log in</button>
</form>`);
}

export function offPage(reason: string): Html {
  return layout({ session: null, path: '/console/' }, 'The console is off', html`
<p>${reason}</p>
<p>To turn it on (see docs/console.md):</p>
<pre>npx espf console user add alice --role admin     # asks for the password on stdin
psql "$DATABASE_URL" -c "UPDATE espf.console SET enabled = true"</pre>`);
}

/** The answer of an attempt: its error (which names the HTTP status), else the status. */
function answer(status: number | null | undefined, error: string | null | undefined): string {
  return error ?? (status ? `HTTP ${status}` : '');
}

function stateBadge(s: string | null | undefined): Html {
  return s ? html`<span class="state ${s}">${s}</span>` : html``;
}

function seriesOf(series: Row[], handler: string, key: 'delivered' | 'failed'): number[] {
  const out = new Array<number>(36).fill(0);
  for (const r of series) if (r.handler === handler && r.bucket >= 0 && r.bucket < 36) out[r.bucket] = Number(r[key]);
  return out;
}

export function overviewPage(ctx: PageContext, d: { handlers: Row[]; slots: Row[]; series: Row[]; statuses: Row[] }, warnAgeS = 300): Html {
  const statusOf = new Map(d.statuses.map((s) => [s.handler, s]));
  const rows = d.handlers.map((h) => {
    const failed = Number(h.failed_24h);
    const waiting = Number(h.waiting);
    const old = h.oldest_age_s !== null && h.oldest_age_s > warnAgeS;
    const stuck = waiting > 0 && !h.enabled;
    const st = statusOf.get(h.handler);
    const down = Number(h.targets_down ?? 0);
    const needsPerson = failed > 0 || old || stuck || Number(h.retry) > 0 || down > 0;
    return html`<tr class="${needsPerson ? 'bad' : ''}">
  <th scope="row"><a href="/console/handlers/${encodeURIComponent(h.handler)}">${h.handler}</a><div class="muted">${h.kind}${h.enabled ? '' : ', disabled'}</div></th>
  <td>${h.instance}</td>
  <td class="num">${Number(h.delivered_per_min).toFixed(1)}</td>
  <td class="num${failed > 0 ? ' bad' : ''}"><a href="/console/deliveries?handler=${encodeURIComponent(h.handler)}&amp;state=FAILED">${failed}</a></td>
  <td class="num${stuck ? ' bad' : ''}">${waiting}${waiting ? html`<div class="muted">${h.pending} pending, ${h.retry} retry</div>` : ''}</td>
  <td class="num${old ? ' bad' : ''}">${age(h.oldest_age_s)}</td>
  <td>${down > 0 ? html`<div class="bad">${down} URL${down > 1 ? 's' : ''} down (probed only)</div>` : ''}${h.last_error ? html`${h.last_error}<div class="muted">${when(h.last_error_at)}</div>` : ''}</td>
  <td class="num">${st ? html`<span class="bad">${st.failed} failed, ${st.retry} retry</span>` : '0'}</td>
  <td class="wide">${sparkline(seriesOf(d.series, h.handler, 'delivered'), { label: `${h.handler} delivered, last 6 hours` })}
      ${sparkline(seriesOf(d.series, h.handler, 'failed'), { label: `${h.handler} failed, last 6 hours`, color: '#b91c1c' })}</td>
</tr>`;
  });
  const slots = d.slots.map((s) => {
    const bad = !s.slot_exists || !s.active || s.lagging;
    return html`<tr class="${bad ? 'bad' : ''}"><th scope="row">${s.instance}</th><td>${s.slot_name}</td>
      <td>${s.slot_exists ? (s.active ? 'streaming' : 'not streaming (no espf run attached)') : 'no slot (espf run never started)'}</td>
      <td class="num">${s.lag_bytes === null ? '' : formatBytes(Number(s.lag_bytes))}</td>
      <td>${s.host ? `${s.host} pid ${s.pid}` : ''}${s.started_at ? html`<div class="muted">started ${when(s.started_at)}</div>` : ''}</td>
      <td>${when(s.streamed_at)}</td></tr>`;
  });
  return layout(ctx, 'Overview', html`
<p class="muted">Red rows need a person: deliveries failed for good in the last 24 hours, retries, a URL the circuit breaker holds down, a waiting event older than ${age(warnAgeS)}, events waiting for a disabled handler, an instance that does not stream, or a slot that holds back more WAL than espf.maintenance.slot_lag_warn_bytes. <a href="/console/">Refresh</a></p>
<h2>Handlers</h2>
<div class="scroll"><table>
<thead><tr><th scope="col">Handler</th><th scope="col">Instance</th><th scope="col" class="num">Delivered /min<br><span class="muted">last 5 min</span></th><th scope="col" class="num">Failed<br><span class="muted">24 h</span></th><th scope="col" class="num">Waiting</th><th scope="col" class="num">Oldest waiting</th><th scope="col">Last error</th><th scope="col" class="num">Accounts not OK</th><th scope="col" class="wide">Delivered / failed, last 6 h</th></tr></thead>
<tbody>${rows}</tbody></table></div>
<h2>Instances</h2>
<div class="scroll"><table>
<thead><tr><th scope="col">Instance</th><th scope="col">Slot</th><th scope="col">State</th><th scope="col" class="num">Slot lag</th><th scope="col">Process</th><th scope="col">Last heartbeat</th></tr></thead>
<tbody>${slots}</tbody></table></div>`);
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

export function matrixPage(ctx: PageContext, m: Matrix, handlers: Row[], msg: { ok?: string | null; error?: string | null }): Html {
  const admin = canChange(ctx);
  const enabledOf = new Map(handlers.map((h) => [h.name, h.enabled as boolean]));
  const dis = admin ? '' : html` disabled`;
  const head = m.handlers.map((h) => {
    const on = enabledOf.get(h) ?? false;
    return html`<th scope="col"><a href="/console/handlers/${encodeURIComponent(h)}">${h}</a><br>
      <button type="submit" name="op" value="${`handler|${h}|${on ? 'off' : 'on'}`}" class="${on ? 'on' : ''}" aria-pressed="${String(on)}" aria-label="${`handler ${h} ${on ? 'enabled: disable it' : 'disabled: enable it'}`}"${dis}>${on ? 'enabled' : 'disabled'}</button></th>`;
  });
  const rows = m.rows.map((r) => html`<tr>
  <th scope="row">${r.type}</th>
  <td><button type="submit" name="op" value="${`type|${r.type}|${r.enabled ? 'off' : 'on'}`}" class="${r.enabled ? 'on' : ''}" aria-pressed="${String(r.enabled)}" aria-label="${`type ${r.type} ${r.enabled ? 'on: switch capture off' : 'off: switch capture on'}`}"${dis}>${r.enabled ? 'on' : 'off'}</button></td>
  ${r.states.map((s, i) => {
    const h = m.handlers[i]!;
    if (s === ' ') return html`<td class="muted" title="cannot subscribe"></td>`;
    const sub = s === '+';
    return html`<td><button type="submit" class="cell${sub ? ' on' : ''}" name="op" value="${`${sub ? 'unsub' : 'sub'}|${h}|${r.type}`}" aria-pressed="${String(sub)}" aria-label="${`${h} ${sub ? 'subscribed to' : 'not subscribed to'} ${r.type}`}" data-cell="${`${h}|${r.type}`}"${dis}>${sub ? '+' : '·'}</button></td>`;
  })}
</tr>`);
  return layout(ctx, 'Matrix', html`
${notice('ok', msg.ok)}${notice('error', msg.error)}
<p class="muted">A row per event type (on = captured), a column per handler: + subscribed, · can subscribe, empty: cannot. ${admin ? 'Each button switches.' : 'You can look, not change (viewer).'} The same as <code>espf matrix</code> and <code>SELECT * FROM espf.matrix</code>.</p>
<form method="post" action="/console/matrix">${csrfField(ctx)}
<div class="scroll"><table>
<thead><tr><th scope="col">Event type</th><th scope="col">Captured</th>${head}</tr></thead>
<tbody>${rows}</tbody></table></div>
</form>`);
}

export function handlersPage(ctx: PageContext, handlers: Row[]): Html {
  return layout(ctx, 'Handlers', html`
<div class="scroll"><table><thead><tr><th scope="col">Handler</th><th scope="col">Kind</th><th scope="col">Enabled</th><th scope="col">Instance</th></tr></thead>
<tbody>${handlers.map((h) => html`<tr><th scope="row"><a href="/console/handlers/${encodeURIComponent(h.handler)}">${h.handler}</a></th><td>${h.kind}</td><td>${h.enabled ? 'yes' : 'no'}</td><td>${h.instance}</td></tr>`)}</tbody></table></div>`);
}

function secretState(v: unknown): string {
  if (v === null || v === undefined || v === '') return 'not set';
  if (typeof v === 'string' && isEnvRef(v)) return `set: ${v}`;
  return 'set';
}

/** The form of an http handler; `values` are what to show (the row, or what was submitted). */
export function handlerPage(ctx: PageContext, name: string, row: Row, opts: {
  values?: Record<string, unknown>; errorColumn?: string | null; error?: string | null; ok?: string | null; test?: TestAnswer[] | null;
}): Html {
  const admin = canChange(ctx);
  const v = { ...row, ...(opts.values ?? {}) };
  const dis = admin ? '' : html` disabled`;
  const fields = HTTP_FIELDS.filter((f) => f.column in row).map((f) => {
    const id = `f_${f.column}`;
    const invalid = opts.errorColumn === f.column;
    const describedBy = `${id}_help${invalid ? ` ${id}_err` : ''}`;
    const common = html` id="${id}" name="${f.column}" aria-describedby="${describedBy}"${invalid ? html` aria-invalid="true"` : ''}${dis}`;
    let input: Html;
    const value = v[f.column];
    switch (f.kind) {
      case 'urls': input = html`<textarea rows="3"${common}>${(Array.isArray(value) ? value : []).join('\n')}</textarea>`; break;
      case 'json': input = html`<textarea rows="2"${common}>${typeof value === 'string' ? value : JSON.stringify(value ?? {})}</textarea>`; break;
      case 'bool': input = html`<select${common}><option value="true"${value === true || value === 'true' ? html` selected` : ''}>true</option><option value="false"${value === false || value === 'false' ? html` selected` : ''}>false</option></select>`; break;
      case 'choice': input = html`<select${common}>${f.choices!.map((c) => html`<option${c === value ? html` selected` : ''}>${c}</option>`)}</select>`; break;
      case 'secret': input = html`<input type="password" autocomplete="new-password" placeholder="${secretState(row[f.column])} (type to replace)"${common}>
        <label class="muted"><input type="checkbox" name="clear_${f.column}"${dis}> clear</label>`; break;
      default: input = html`<input type="text" value="${value === null || value === undefined ? '' : String(value)}"${common}>`;
    }
    return html`<div class="field${invalid ? ' invalid' : ''}">
  <label for="${id}">${f.label}${f.seed ? html`<div class="muted">${f.seed}</div>` : ''}</label>
  <div>${input}</div>
  <div class="help" id="${id}_help">${f.help}</div>
  ${invalid ? html`<div class="err" id="${id}_err" role="alert">${opts.error}</div>` : ''}
</div>`;
  });
  const generalError = opts.error && !HTTP_FIELDS.some((f) => f.column === opts.errorColumn) ? opts.error : null;
  return layout(ctx, `Handler ${name}`, html`
${notice('ok', opts.ok)}${notice('error', generalError)}
<p>http handler, instance <b>${row.instance}</b>, ${row.enabled ? html`<span class="good">enabled</span>` : html`<span class="bad">disabled</span>`} (switch it on the <a href="/console/matrix">matrix</a>). The row is <code>espf.http_handlers</code> where handler = '${name}'; the database checks every change. <a href="/console/deliveries?handler=${encodeURIComponent(name)}">Its deliveries</a>.</p>
<form method="post" action="/console/handlers/${encodeURIComponent(name)}/test">${csrfField(ctx)}
  <button type="submit"${dis}>Send a test event</button> <span class="muted">POSTs {"event_type": "espf/Test", …} to each URL with the handler's auth, and shows the answers.</span>
</form>
${opts.test ? html`<h2>Test answers</h2><div class="scroll"><table><thead><tr><th scope="col">URL</th><th scope="col">Answer</th><th scope="col" class="num">ms</th></tr></thead><tbody>${opts.test.map((t) => html`<tr class="${t.ok ? '' : 'bad'}"><td>${t.url}</td><td>${t.answer}</td><td class="num">${t.durationMs}</td></tr>`)}</tbody></table></div>` : ''}
<h2>Settings</h2>
<form method="post" action="/console/handlers/${encodeURIComponent(name)}" novalidate>${csrfField(ctx)}
${fields}
<p><button class="primary" type="submit"${dis}>Save</button></p>
</form>`);
}

export function dispatcherPage(ctx: PageContext, row: Row, consumes: string[]): Html {
  return layout(ctx, `Handler ${row.handler}`, html`
<p>Dispatcher, instance <b>${row.instance}</b>, ${row.enabled ? 'enabled' : 'disabled'}. It consumes: ${consumes.join(', ') || 'nothing'}. Switch it and its subscriptions on the <a href="/console/matrix">matrix</a>. Its rules are SQL views (sql/200_dispatchers.sql).</p>`);
}

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

export interface LogAttempt { time: string; handler: string; i_event: number; event_type: string; url: string; attempt: number; status: number | null; error: string | null; duration_ms: number }

export function subscriberPage(ctx: PageContext, d: { account: Row | null; deliveries: Row[]; statuses: Row[] }, iAccount: number, attempts: LogAttempt[], msg: { ok?: string | null; error?: string | null }): Html {
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
<tbody>${attempts.map((t) => html`<tr class="${t.status !== null && t.status >= 200 && t.status < 300 ? '' : 'bad'}"><td>${when(t.time)}</td><td>${t.i_event} ${t.event_type}</td><td>${t.handler}</td><td>${t.url}</td><td class="num">${t.attempt}</td><td>${answer(t.status, t.error)}</td><td class="num">${t.duration_ms}</td></tr>`)}</tbody></table></div>` : ''}`);
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
   <span class="muted">Only finished deliveries (DELIVERED, FAILED) are re-queued, with espf.resend.</span></p>
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

export interface Job { id: string; total: number; done: number; requeued: number; finished: boolean; error: string | null; back: string }

export function jobPage(ctx: PageContext, job: Job): Html {
  return layout(ctx, 'Resend', html`
${job.finished ? '' : html`<meta http-equiv="refresh" content="1">`}
<p role="status">${job.finished ? (job.error ? 'Stopped.' : 'Done.') : 'Re-queueing…'} ${job.requeued} of ${job.total} deliveries re-queued.</p>
<progress max="${Math.max(1, job.total)}" value="${job.done}" aria-label="Resend progress">${job.done}</progress>
${notice('error', job.error)}
<p><a href="${job.back}">Back to the deliveries</a></p>`);
}

export function auditPage(ctx: PageContext, rows: Row[]): Html {
  return layout(ctx, 'Audit', html`
<p class="muted">Every change made in the console (espf.console_audit): who, what, the row before and after. Secret values show as "(set)".</p>
<div class="scroll"><table><thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">What</th><th scope="col">Target</th><th scope="col">Before</th><th scope="col">After</th></tr></thead>
<tbody>${rows.map((r) => html`<tr><td>${when(r.at)}</td><td>${r.user_name}</td><td>${r.action}</td><td>${r.target}</td><td><code>${r.before ? JSON.stringify(r.before) : ''}</code></td><td><code>${r.after ? JSON.stringify(r.after) : ''}</code></td></tr>`)}</tbody></table></div>`);
}

export function errorPage(ctx: PageContext, title: string, text: string): Html {
  return layout(ctx, title, html`${notice('error', text)}<p><a href="/console/">Overview</a></p>`);
}
