import { html, type Html } from '../html.ts';
import { layout, notice, type PageContext } from '../layout.ts';
import { Refusal, send } from '../http.ts';
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
}];

export function jobPage(ctx: PageContext, job: Job): Html {
  return layout(ctx, 'Resend', html`
${job.finished ? '' : html`<meta http-equiv="refresh" content="1">`}
<p role="status">${job.finished ? (job.error ? 'Stopped.' : 'Done.') : 'Re-queueing…'} ${job.requeued} of ${job.total} deliveries re-queued.</p>
<progress max="${Math.max(1, job.total)}" value="${job.done}" aria-label="Resend progress">${job.done}</progress>
${notice('error', job.error)}
<p><a href="${job.back}">Back to the deliveries</a></p>`);
}

