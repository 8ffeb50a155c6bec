import { html, type Html } from '../html.ts';
import { canChange, csrfField, doneMessage, layout, notice, type PageContext } from '../layout.ts';
import { FieldError, formValues, HTTP_FIELDS, type Field } from '../fields.ts';
import { pathName, redirect, Refusal, send } from '../http.ts';
import * as store from '../store.ts';
import { sendTestEvent, type TestAnswer } from '../test-event.ts';
import type { Route } from '../routes.ts';
import { stepsSection } from './handler-steps.ts';
import { envsSection } from './handler-envs.ts';
import type { StepRow } from '../../delivery/steps/plan.ts';
import { oneLine } from '../../errors.ts';
import { isEnvRef } from '../../security/secret-ref.ts';
import { redactUrl } from '../../security/redact.ts';

/** Handlers: the list, an http handler's settings form and test event, a dispatcher's page (docs/console.md). */

type Row = Record<string, any>;

export const handlerRoutes: readonly Route[] = [{
  path: '/console/handlers', method: 'GET',
  async handle(r) {
    send(r.res, 200, handlersPage(r.ctx, await store.handlerRows(r.deps.db)));
  },
}, {
  path: /^\/console\/handlers\/([^/]+)(\/test)?$/, method: 'ANY',
  async handle(r) {
    const { db, log } = r.deps;
    const c = r.ctx;
    const user = r.session.user;
    const name = pathName(r.params[0]!);
    const row = await store.readHttpHandler(db, name);
    if (!row) {
      const [h] = (await store.handlerRows(db)).filter((x) => x.handler === name);
      if (!h || !r.get) throw new Refusal(404, `unknown handler ${name}`);
      const consumes = await store.consumes(db, name);
      return send(r.res, 200, dispatcherPage(c, h, consumes));
    }
    const steps = await store.httpSteps(db, name);
    const envs = await store.handlerEnvList(db, name);
    if (r.get) return send(r.res, 200, handlerPage(c, name, row, steps, envs, { ok: doneMessage(r.query) }));
    if (r.params[1]) {
      const answers = await sendTestEvent(row, r.deps.testEventDeny);
      log.info({ handler: name, user, answers: answers.map((a) => a.answer) }, 'console: test event sent');
      await store.audit(db, user, 'test event', name, null, { answers: answers.map((a) => ({ url: redactUrl(a.url), answer: a.answer })) });
      return send(r.res, 200, handlerPage(c, name, row, steps, envs, { test: answers }));
    }
    try {
      const values = formValues(r.form, row);
      await store.updateHttpHandler(db, user, name, values);
      return redirect(r.res, `/console/handlers/${encodeURIComponent(name)}?done=saved`);
    } catch (err) {
      await store.auditRefusal(db, log, user, r.path, 422, oneLine(err));
      const column = err instanceof FieldError ? err.column : columnOf(err);
      const submitted: Record<string, unknown> = {};
      for (const [k, v] of r.form) if (k !== '_csrf' && !k.startsWith('clear_')) submitted[k] = k === 'url' ? v.split(/\r?\n/).map((s) => s.trim()).filter(Boolean) : v;
      for (const s of store.SECRET_COLUMNS) delete submitted[s];
      return send(r.res, 422, handlerPage(c, name, row, steps, envs, { values: submitted, errorColumn: column, error: oneLine(err) }));
    }
  },
}];

/** The column a database refusal names (espf.refuse sets it), if any. */
function columnOf(err: unknown): string | null {
  const c = (err as { column?: unknown } | null)?.column;
  return typeof c === 'string' && c ? c : null;
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

/**
 * The inputs of a settings form: `row` as stored (a secret shows whether it is
 * set), `v` what to show (the row, or what was submitted); `inherited`: an
 * environment's form, where an empty input inherits the default row's value
 * (shown as the placeholder).
 */
export function settingsFields(ctx: PageContext, fields: readonly Field[], row: Row, v: Row,
  opts: { errorColumn?: string | null; error?: string | null }, inherited?: Row): Html[] {
  const dis = canChange(ctx) ? '' : html` disabled`;
  return fields.map((f) => {
    const id = `f_${f.column}`;
    const invalid = opts.errorColumn === f.column;
    const describedBy = `${id}_help${invalid ? ` ${id}_err` : ''}`;
    const common = html` id="${id}" name="${f.column}" aria-describedby="${describedBy}"${invalid ? html` aria-invalid="true"` : ''}${dis}`;
    const ph = inherited ? html` placeholder="${inheritedText(f, inherited[f.column])}"` : '';
    let input: Html;
    const value = v[f.column];
    switch (f.kind) {
      case 'urls': input = html`<textarea rows="3"${common}${ph}>${(Array.isArray(value) ? value : []).map((u) => redactUrl(String(u))).join('\n')}</textarea>`; break;
      case 'json': input = html`<textarea rows="2"${common}${ph}>${typeof value === 'string' ? value : value === null && inherited ? '' : JSON.stringify(value ?? {})}</textarea>`; break;
      case 'bool': input = html`<select${common}><option value="true"${value === true || value === 'true' ? html` selected` : ''}>true</option><option value="false"${value === false || value === 'false' ? html` selected` : ''}>false</option></select>`; break;
      case 'choice': input = html`<select${common}>${inherited ? html`<option value=""${value === null || value === undefined ? html` selected` : ''}>${inheritedText(f, inherited[f.column])}</option>` : ''}${f.choices!.map((c) => html`<option${c === value ? html` selected` : ''}>${c}</option>`)}</select>`; break;
      case 'secret': input = html`<input type="password" autocomplete="new-password" placeholder="${inherited && (row[f.column] === null || row[f.column] === undefined) ? inheritedText(f, inherited[f.column]) : `${secretState(row[f.column])} (type to replace)`}"${common}>
        <label class="muted"><input type="checkbox" name="clear_${f.column}"${dis}> ${inherited ? 'inherit' : 'clear'}</label>`; break;
      default: input = html`<input type="text" value="${value === null || value === undefined ? '' : String(value)}"${common}${ph}>`;
    }
    return html`<div class="field${invalid ? ' invalid' : ''}">
  <label for="${id}">${f.label}${f.seed ? html`<div class="muted">${f.seed}</div>` : ''}</label>
  <div>${input}</div>
  <div class="help" id="${id}_help">${f.help}</div>
  ${invalid ? html`<div class="err" id="${id}_err" role="alert">${opts.error}</div>` : ''}
</div>`;
  });
}

/** What an empty input of an environment's form stands for: the default row's value (a secret: whether it is set). */
function inheritedText(f: Field, v: unknown): string {
  if (f.kind === 'secret') return `default: ${secretState(v)}`;
  if (f.kind === 'urls') return `default: ${(Array.isArray(v) ? v : []).map((u) => redactUrl(String(u))).join(' ')}`;
  return `default: ${v === null || v === undefined ? '(none)' : typeof v === 'object' ? JSON.stringify(v) : String(v)}`;
}

/** The form of an http handler; `values` are what to show (the row, or what was submitted). */
export function handlerPage(ctx: PageContext, name: string, row: Row, steps: readonly StepRow[], envs: readonly number[], opts: {
  values?: Record<string, unknown>; errorColumn?: string | null; error?: string | null; ok?: string | null; test?: TestAnswer[] | null;
}): Html {
  const admin = canChange(ctx);
  const v = { ...row, ...(opts.values ?? {}) };
  const dis = admin ? '' : html` disabled`;
  const fields = settingsFields(ctx, HTTP_FIELDS.filter((f) => f.column in row), row, v, opts);
  const generalError = opts.error && !HTTP_FIELDS.some((f) => f.column === opts.errorColumn) ? opts.error : null;
  return layout(ctx, `Handler ${name}`, html`
${notice('ok', opts.ok)}${notice('error', generalError)}
<p>http handler, instance <b>${row.instance}</b>, ${row.enabled ? html`<span class="good">enabled</span>` : html`<span class="bad">disabled</span>`} (switch it on the <a href="/console/matrix">matrix</a>). The row is <code>espf.http_handlers</code> where handler = '${name}'; the database checks every change. <a href="/console/deliveries?handler=${encodeURIComponent(name)}">Its deliveries</a>.</p>
<form method="post" action="/console/handlers/${encodeURIComponent(name)}/test">${csrfField(ctx)}
  <button type="submit"${dis}>Send a test event</button> <span class="muted">POSTs {"event_type": "espf/Test", …} to each URL with the handler's auth, and shows the answers.</span>
</form>
${opts.test ? html`<h2>Test answers</h2><div class="scroll"><table><thead><tr><th scope="col">URL</th><th scope="col">Answer</th><th scope="col" class="num">ms</th></tr></thead><tbody>${opts.test.map((t) => html`<tr class="${t.ok ? '' : 'bad'}"><td>${redactUrl(t.url)}</td><td>${t.answer}</td><td class="num">${t.durationMs}</td></tr>`)}</tbody></table></div>` : ''}
<h2>Settings</h2>
<form method="post" action="/console/handlers/${encodeURIComponent(name)}" novalidate>${csrfField(ctx)}
${fields}
<p><button class="primary" type="submit"${dis}>Save</button></p>
</form>
${envsSection(ctx, name, envs)}
${stepsSection(steps)}`);
}

export function dispatcherPage(ctx: PageContext, row: Row, consumes: string[]): Html {
  return layout(ctx, `Handler ${row.handler}`, html`
<p>Dispatcher, instance <b>${row.instance}</b>, ${row.enabled ? 'enabled' : 'disabled'}. It consumes: ${consumes.join(', ') || 'nothing'}. Switch it and its subscriptions on the <a href="/console/matrix">matrix</a>. Its rules are SQL views (sql/200_dispatchers.sql).</p>`);
}

