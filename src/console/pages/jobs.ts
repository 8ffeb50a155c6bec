import { html, type Html } from '../html.ts';
import { canChange, csrfField, layout, notice, type PageContext } from '../layout.ts';
import { redirect, Refusal, send } from '../http.ts';
import type { Job } from '../resend-jobs.ts';
import type { Route } from '../routes.ts';

/** A resend of all matching deliveries: its progress (docs/console.md). */

export const jobRoutes: readonly Route[] = [{
  path: /^\/console\/jobs\/([a-f0-9]{16})$/, method: 'GET',
  async handle(r) {
    const job = r.deps.jobs.get(r.params[0]!);
    if (!job) throw new Refusal(404, 'no such resend job on this instance (jobs are kept in the memory of the espf run that started them)');
    send(r.res, 200, jobPage(r.ctx, job));
  },
}, {
  path: /^\/console\/jobs\/([a-f0-9]{16})\/cancel$/, method: 'POST',
  async handle(r) {
    const job = r.deps.jobs.get(r.params[0]!);
    if (!job) throw new Refusal(404, 'no such resend job on this instance');
    r.deps.jobs.cancel(job.id, r.session.user);
    redirect(r.res, `/console/jobs/${job.id}`);
  },
}];

export function jobPage(ctx: PageContext, job: Job): Html {
  const state = !job.finished ? 'Re-queueing…' : job.error ? 'Stopped.' : job.cancelledBy ? `Cancelled by ${job.cancelledBy}.` : 'Done.';
  return layout(ctx, 'Resend', html`
${job.finished ? '' : html`<meta http-equiv="refresh" content="1">`}
<p role="status">${state} ${job.requeued} of ${job.total} deliveries re-queued.</p>
<progress max="${Math.max(1, Math.min(job.total, job.cap))}" value="${job.done}" aria-label="Resend progress">${job.done}</progress>
${job.total > job.cap ? html`<p class="muted">This job stops at ${job.cap} (espf.console.resend_max_rows).</p>` : ''}
${notice('error', job.error)}
${job.finished ? '' : html`<form method="post" action="/console/jobs/${job.id}/cancel">${csrfField(ctx)}<button type="submit"${canChange(ctx) ? '' : html` disabled`}>Cancel</button></form>`}
<p class="muted">Started by ${job.user}; ${job.confirmed} confirmed.</p>
<p><a href="${job.back}">Back to the deliveries</a></p>`);
}
