import type { HttpSettings } from '../../config/snapshot.ts';
import { redactText } from '../../security/redact.ts';
import { parseRetryAfter, type PostResult, type StepExchange } from '../http-client.ts';
import type { Delivery } from '../keyed-queue.ts';
import { judge, parseBody } from './judge.ts';
import type { CompiledStep } from './plan.ts';
import { publicSettings, renderStep, RenderError, stepInput, type StepAnswer, type StepRequest } from './render.ts';

/**
 * What the steps of one attempt need from the attempter: made once per
 * attempter, not per attempt; what one attempt keeps of its own (`A`) is
 * given to runSteps and handed back to `answered`.
 */
export interface StepsDeps<A = unknown> {
  readonly handler: string;
  /** Sends one step's request of `d` (src/delivery/http-client.ts `request`). */
  readonly request: (r: StepRequest, s: HttpSettings, step: CompiledStep, d: Delivery) => Promise<StepExchange>;
  /** After each step: provisioning.log, metrics, the target's circuit breaker; `at`: what runSteps was given. */
  readonly answered: (d: Delivery, url: string, r: PostResult, at: A) => void;
  /**
   * A step that is not the last one is done: its answer (in `d`) is made
   * durable with the delivery (an intermediate record, still waiting);
   * resolves when it is committed, before the next step is sent.
   */
  readonly checkpoint: (d: Delivery) => Promise<void>;
  readonly env?: NodeJS.ProcessEnv;
}

const MAX_SNIPPET = 200;

/** The settings expressions see, made once per handler and settings object (a new one comes with a change of configuration). */
const shownSettings = new WeakMap<HttpSettings, { readonly handler: string; readonly settings: Readonly<Record<string, unknown>> }>();

function publicSettingsOf(handler: string, s: HttpSettings): Readonly<Record<string, unknown>> {
  const known = shownSettings.get(s);
  if (known?.handler === handler) return known.settings;
  const settings = publicSettings(handler, s);
  shownSettings.set(s, { handler, settings });
  return settings;
}

/**
 * The request steps of one attempt of `d` (docs/handlers.md, "Request
 * steps"): from the first step not done (`d.stepsDone`, with the answers of
 * the done ones), each rendered, sent and judged by its rules; a done step's
 * answer is durable before the next step goes. Returns the last result: ok
 * when every step is done; else why the step failed, `permanent` when its
 * refuse_when held. The answer of the last step is kept nowhere once judged:
 * no later step reads it, and a finished delivery's row keeps no answers
 * (src/delivery/results-writer.ts).
 */
export async function runSteps<A>(d: Delivery, steps: readonly CompiledStep[], s: HttpSettings, deps: StepsDeps<A>, at: A): Promise<PostResult> {
  const base = s.url[0]!;
  const settings = publicSettingsOf(deps.handler, s);
  let last: PostResult = { ok: true, status: 0, durationMs: 0 };
  while (d.stepsDone < steps.length) {
    const step = steps[d.stepsDone]!;
    const answers = d.stepAnswers;
    const input = stepInput(d.item.event, settings, steps, answers);
    let req: StepRequest;
    try {
      const rendered = renderStep(step, input, base, deps.env);
      req = rendered instanceof Promise ? await rendered : rendered; // at once when the walker evaluated it all
    } catch (err) {
      const why = err instanceof RenderError ? err.message : String(err);
      return { ok: false, status: null, reason: `${label(step)} ${step.pathText}: ${why}`, retryAfterMs: null, durationMs: 0 };
    }
    const x = await deps.request(req, s, step, d);
    const url = redactText(req.url, x.secrets);
    if (x.status === null || x.error !== null) {
      last = { ok: false, status: x.status, reason: `${where(step, req)}: ${redactText(x.error ?? 'no answer', x.secrets)}`, retryAfterMs: null, durationMs: x.durationMs };
      deps.answered(d, url, last, at);
      return last;
    }
    // Of the last step's 2xx answer the body is parsed only when a rule may read it (CompiledStep.answer).
    const answer: StepAnswer = { status: x.status, headers: x.headers, body: step.answer.body ? parseBody(x.text) : null };
    const judged = judge(step, answer, input);
    const v = judged instanceof Promise ? await judged : judged;
    if (v.kind === 'done') {
      last = { ok: true, status: x.status, durationMs: x.durationMs };
      deps.answered(d, url, last, at);
      d.stepsDone++;
      if (d.stepsDone < steps.length) {
        d.stepAnswers = [...answers, answer]; // read by the later steps, and kept with the delivery until it finishes
        await deps.checkpoint(d);
      }
      continue;
    }
    const snippet = redactText(x.text, x.secrets).replace(/\s+/g, ' ').trim().slice(0, MAX_SNIPPET);
    const rule = v.kind === 'refused' ? ' (refuse_when: failed for good)' : v.rule ? ` (a rule failed: ${v.rule})` : '';
    last = {
      ok: false, status: x.status, reason: `${where(step, req)}: ${x.status}${snippet ? ` ${snippet}` : ''}${rule}`,
      retryAfterMs: x.status === 429 || x.status === 503 ? parseRetryAfter(x.headers['retry-after']) : null,
      durationMs: x.durationMs, permanent: v.kind === 'refused',
    };
    deps.answered(d, url, last, at);
    return last;
  }
  return last;
}

/** A step as error messages name it: "step 2 (auc) PUT". */
function label(step: CompiledStep): string {
  return `step ${step.number}${step.name ? ` (${step.name})` : ''} ${step.method}`;
}

/** A step and its rendered path (secrets masked), for error messages. */
function where(step: CompiledStep, req: StepRequest): string {
  return `${label(step)} ${redactText(req.path || '/', req.secrets)}`;
}
