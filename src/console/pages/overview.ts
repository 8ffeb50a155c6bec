import { age, html, sparkline, when, type Html } from '../html.ts';
import { layout, type PageContext } from '../layout.ts';
import { send } from '../http.ts';
import * as store from '../store.ts';
import type { Route } from '../routes.ts';

/** Overview: is provisioning healthy? One row per handler, one per instance (docs/console.md). */

type Row = Record<string, any>;

export const overviewRoutes: readonly Route[] = [{
  path: '/console/', method: 'GET',
  async handle(r) {
    send(r.res, 200, overviewPage(r.ctx, await store.overview(r.deps.db)));
  },
}];

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

