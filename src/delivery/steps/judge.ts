import { ExpressionError } from './expression.ts';
import type { CompiledStep } from './plan.ts';
import type { StepAnswer } from './render.ts';

/** What one answer of a step comes to. */
export type StepVerdict =
  /** success_when (default: any 2xx) or exists_when ("already exists") held: the step is done. */
  | { readonly kind: 'done'; readonly exists: boolean }
  /** refuse_when held: failed for good at once. */
  | { readonly kind: 'refused' }
  /** Anything else: retried with the handler's backoff; `rule` names a rule that failed to evaluate. */
  | { readonly kind: 'retry'; readonly rule: string | null };

const DONE: StepVerdict = { kind: 'done', exists: false };
const RETRY: StepVerdict = { kind: 'retry', rule: null };

/**
 * The success rules of a step, in this order: exists_when, success_when
 * (null: any 2xx), refuse_when. Each sees the step's input document with
 * the answer's `status`, `headers` and `body`; a rule holds when it gives
 * true. A rule that fails to evaluate makes the answer a retry, with why.
 */
export function judge(step: CompiledStep, answer: StepAnswer, input: Record<string, unknown>): StepVerdict | Promise<StepVerdict> {
  // No rule: any 2xx is done, at once, and no document is built.
  if (!step.exists && !step.success && !step.refuse) return answer.status >= 200 && answer.status < 300 ? DONE : RETRY;
  return judgeByRules(step, answer, input);
}

async function judgeByRules(step: CompiledStep, answer: StepAnswer, input: Record<string, unknown>): Promise<StepVerdict> {
  const doc = { ...input, status: answer.status, headers: answer.headers, body: answer.body };
  try {
    if (step.exists && await step.exists.evaluate(doc) === true) return { kind: 'done', exists: true };
    const ok = step.success ? await step.success.evaluate(doc) === true : answer.status >= 200 && answer.status < 300;
    if (ok) return { kind: 'done', exists: false };
    if (step.refuse && await step.refuse.evaluate(doc) === true) return { kind: 'refused' };
    return { kind: 'retry', rule: null };
  } catch (err) {
    return { kind: 'retry', rule: err instanceof ExpressionError ? err.message : String(err) };
  }
}

/** An answer's body text as the expressions see it: JSON parsed, other text as it is, null when empty. */
export function parseBody(text: string): unknown {
  if (text === '') return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
