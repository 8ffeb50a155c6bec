import { html, type Html } from '../html.ts';
import { canChange, csrfField, doneMessage, layout, notice, type PageContext } from '../layout.ts';
import { FieldError, formValues, HTTP_FIELDS } from '../fields.ts';
import { pathName, redirect, Refusal, send } from '../http.ts';
import * as store from '../store.ts';
import type { Route } from '../routes.ts';
import { settingsFields } from './handlers.ts';
import { HTTP_ENV_COLUMNS } from '../../db/config.ts';
import { oneLine } from '../../errors.ts';

/**
 * An http handler's settings per environment (docs/handlers.md, "Settings per
 * environment"): the section of the handler's page that lists the
 * environments with a row of espf.http_handler_envs, and the form of one
 * (an empty input inherits the default row). The same roles and CSRF rules as
 * the default form (src/console/server.ts).
 */

type Row = Record<string, any>;

/** The fields an environment may override, in the form's order. */
const ENV_FIELDS = HTTP_FIELDS.filter((f) => HTTP_ENV_COLUMNS.includes(f.column));

const base = (name: string) => `/console/handlers/${encodeURIComponent(name)}/env`;

export const handlerEnvRoutes: readonly Route[] = [{
  // The "open an environment" form of the handler's page (GET ?i_env=N).
  path: /^\/console\/handlers\/([^/]+)\/env$/, method: 'GET',
  async handle(r) {
    const name = pathName(r.params[0]!);
    const env = r.query.get('i_env') ?? '';
    if (!/^(0|[1-9][0-9]{0,8})$/.test(env)) throw new Refusal(400, `i_env: ${JSON.stringify(env.slice(0, 20))} is not an environment (a whole number >= 0)`);
    redirect(r.res, `${base(name)}/${env}`);
  },
}, {
  path: /^\/console\/handlers\/([^/]+)\/env\/(0|[1-9][0-9]{0,8})(\/delete)?$/, method: 'ANY',
  async handle(r) {
    const { db, log } = r.deps;
    const name = pathName(r.params[0]!);
    const env = Number(r.params[1]);
    const def = await store.readHttpHandler(db, name);
    if (!def) throw new Refusal(404, `unknown http handler ${name}`);
    const current = await store.readHttpHandlerEnvRow(db, name, env);
    if (r.get) return send(r.res, 200, envPage(r.ctx, name, env, def, current, { ok: doneMessage(r.query) }));
    if (r.params[2]) {
      await store.deleteHttpHandlerEnvRow(db, r.session.user, name, env);
      return redirect(r.res, `/console/handlers/${encodeURIComponent(name)}?done=saved`);
    }
    try {
      const values = formValues(r.form, current?.own ?? {}, { fields: ENV_FIELDS, inherit: true });
      await store.updateHttpHandlerEnv(db, r.session.user, name, env, values);
      return redirect(r.res, `${base(name)}/${env}?done=saved`);
    } catch (err) {
      await store.auditRefusal(db, log, r.session.user, r.path, 422, oneLine(err));
      const column = err instanceof FieldError ? err.column : columnOf(err);
      const submitted: Row = {};
      for (const [k, v] of r.form) if (k !== '_csrf' && !k.startsWith('clear_') && !store.SECRET_COLUMNS.includes(k as never)) submitted[k] = k === 'url' ? v.split(/\r?\n/).map((s) => s.trim()).filter(Boolean) : v;
      return send(r.res, 422, envPage(r.ctx, name, env, def, current, { values: submitted, errorColumn: column, error: oneLine(err) }));
    }
  },
}];

/** The column a database refusal names (espf.refuse sets it), if any. */
function columnOf(err: unknown): string | null {
  const c = (err as { column?: unknown } | null)?.column;
  return typeof c === 'string' && c ? c : null;
}

/** The section "Environments" of an http handler's page. */
export function envsSection(ctx: PageContext, name: string, envs: readonly number[]): Html {
  const dis = canChange(ctx) ? '' : html` disabled`;
  return html`<h2>Environments</h2>
<p>Events whose <code>i_env</code> has settings of its own (a row of <code>espf.http_handler_envs</code>) are delivered with them; an empty setting there inherits the one above. Other events use the settings above.</p>
${envs.length ? html`<ul>${envs.map((e) => html`<li><a href="${base(name)}/${e}">i_env ${e}</a></li>`)}</ul>` : html`<p class="muted">No environment has settings of its own.</p>`}
<form method="get" action="${base(name)}"><label for="f_i_env">i_env</label> <input type="text" id="f_i_env" name="i_env" inputmode="numeric" size="6"${dis}> <button type="submit"${dis}>Open</button></form>`;
}

function envPage(ctx: PageContext, name: string, env: number, def: Row, current: { own: Row; merged: Row } | null, opts: {
  values?: Row; errorColumn?: string | null; error?: string | null; ok?: string | null;
}): Html {
  const own = current?.own ?? {};
  const v = { ...own, ...(opts.values ?? {}) };
  const dis = canChange(ctx) ? '' : html` disabled`;
  const fields = settingsFields(ctx, ENV_FIELDS, own, v, opts, def);
  const generalError = opts.error && !ENV_FIELDS.some((f) => f.column === opts.errorColumn) ? opts.error : null;
  return layout(ctx, `Handler ${name}, i_env ${env}`, html`
${notice('ok', opts.ok)}${notice('error', generalError)}
<p>The settings of the events of environment <b>${env}</b> for http handler <a href="/console/handlers/${encodeURIComponent(name)}">${name}</a>: the row of <code>espf.http_handler_envs</code> where handler = '${name}' and i_env = ${env}${current ? '' : html` (<b>none yet</b>: its events use the default settings; saving makes it)`}. An empty field inherits the handler's default setting, shown in grey. The database checks the merged settings.</p>
<form method="post" action="${base(name)}/${env}" novalidate>${csrfField(ctx)}
${fields}
<p><button class="primary" type="submit"${dis}>Save</button></p>
</form>
${current ? html`<form method="post" action="${base(name)}/${env}/delete">${csrfField(ctx)}<button type="submit"${dis}>Drop the settings of i_env ${env}</button> <span class="muted">its events use the default settings again.</span></form>` : ''}`);
}
