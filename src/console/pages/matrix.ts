import { readMatrix, type Matrix } from '../../config/handlers.ts';
import { oneLine } from '../../errors.ts';
import { html, type Html } from '../html.ts';
import { canChange, csrfField, doneMessage, layout, notice, type PageContext } from '../layout.ts';
import { redirect, Refusal, send } from '../http.ts';
import * as store from '../store.ts';
import type { Route } from '../routes.ts';

/** Matrix: what is captured and who gets it; each cell a switch (docs/console.md). */

type Row = Record<string, any>;

export const matrixRoutes: readonly Route[] = [{
  path: '/console/matrix', method: 'ANY',
  async handle(r) {
    const { db } = r.deps;
    const user = r.session.user;
    let error: string | null = null;
    let ok: string | null = null;
    if (!r.get) {
      const [kind, a, b] = (r.form.get('op') ?? '').split('|');
      try {
        if (kind === 'type' && a) await store.setTypeEnabled(db, user, a, b === 'on');
        else if (kind === 'handler' && a) await store.setHandlerEnabled(db, user, a, b === 'on');
        else if ((kind === 'sub' || kind === 'unsub') && a && b) await store.setSubscribed(db, user, a, b, kind === 'sub');
        else throw new Refusal(400, 'unknown change');
        return redirect(r.res, `/console/matrix?done=${encodeURIComponent(`${kind}|${a}|${b}`)}`);
      } catch (err) {
        error = oneLine(err);
        await store.auditRefusal(db, r.deps.log, user, r.path, 422, error);
        ok = null;
      }
    }
    const [m, handlers] = await Promise.all([readMatrix(db), store.handlerRows(db)]);
    if (!error) {
      const names = new Set([...m.handlers, ...m.rows.map((row) => row.type)]);
      ok = doneMessage(r.query, (n) => names.has(n));
    }
    send(r.res, error ? 422 : 200, matrixPage(r.ctx, m, handlers, { ok, error }));
  },
}];

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

