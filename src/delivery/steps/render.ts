import type { HttpSettings } from '../../config/snapshot.ts';
import { httpUrlProblem } from '../../config/http-url.ts';
import { redactUrl } from '../../security/redact.ts';
import { resolveSecret } from '../../security/secret-ref.ts';
import { ExpressionError, NOT_FAST, type Bindings, type Expression } from './expression.ts';
import type { CompiledStep } from './plan.ts';

/** The answer of a finished step, as later expressions see it (`steps[i]`, `step.<name>`) and espf.event_deliveries.step_answers keeps it. */
export interface StepAnswer {
  readonly status: number;
  /** The answer's headers, names in lower case. */
  readonly headers: Readonly<Record<string, string>>;
  /** The JSON body parsed; text that is not JSON as a string; null when empty. */
  readonly body: unknown;
}

/** The event as the expressions see it. */
export interface StepEvent {
  readonly event_type: string;
  readonly variables: Readonly<Record<string, unknown>>;
}

/**
 * The input document of every expression of a step: `event_type`,
 * `variables`, `settings` (the handler's settings that are not secret),
 * `steps` (the answers of the earlier steps of this event, in order) and
 * `step` (the same by step name). The rules of a step also see its own
 * answer as `status`, `headers` and `body`.
 */
export function stepInput(event: StepEvent, settings: Readonly<Record<string, unknown>>, plan: readonly CompiledStep[],
                          answers: readonly StepAnswer[]): Record<string, unknown> {
  if (answers.length === 0) return { event_type: event.event_type, variables: event.variables, settings, steps: answers, step: NO_ANSWERS };
  const named: Record<string, StepAnswer> = {};
  for (let i = 0; i < answers.length; i++) {
    const n = plan[i]?.name;
    if (n) named[n] = answers[i]!;
  }
  return { event_type: event.event_type, variables: event.variables, settings, steps: answers, step: named };
}

/** `step` of the first step's input: no answer by name yet. */
const NO_ANSWERS: Readonly<Record<string, StepAnswer>> = Object.freeze({});

/** The handler's settings an expression may read (never a secret; URL passwords masked). */
export function publicSettings(handler: string, s: HttpSettings): Record<string, unknown> {
  return {
    handler, url: s.url.map(redactUrl), async_mode: s.async_mode, request_timeout: s.request_timeout,
    max_attempts: s.max_attempts, event_names: s.event_names,
  };
}

/** One step's request, ready to send. */
export interface StepRequest {
  readonly method: string;
  /** The rendered path (below the base URL), for messages. */
  readonly path: string;
  readonly origin: string;
  /** The path and query sent. */
  readonly target: string;
  readonly headers: Record<string, string>;
  readonly body: string | undefined;
  /** The values of the secrets it carries: masked in every message. */
  readonly secrets: readonly string[];
}

/** Largest rendered body (bytes of UTF-16, near enough). */
const MAX_BODY = 1 << 20;

/** A step that cannot be rendered: an expression failed, or gave what its place cannot hold. */
export class RenderError extends Error {
  readonly code = 'ESPF_STEP_RENDER';
}

/**
 * Renders one step for an event: its path below the handler's base URL
 * (`base`, the handler's one URL), headers and body. `env` resolves `env:NAME`
 * secrets (header values written so, and `$secret("env:NAME")` in an expression).
 * When the walker evaluates every expression (Expression.fastValue) the request
 * comes at once, without a promise; otherwise a promise of it. A step that cannot
 * be rendered gives a promise rejected with RenderError.
 */
export function renderStep(step: CompiledStep, input: Record<string, unknown>, base: string,
                           env: NodeJS.ProcessEnv = process.env): StepRequest | Promise<StepRequest> {
  const g = rendering(step, input, base, env);
  let r: IteratorResult<Promise<unknown>, StepRequest>;
  try {
    r = g.next();
  } catch (err) {
    return Promise.reject(err as Error); // a step that cannot be rendered: always a rejection
  }
  return r.done ? r.value : resumeRendering(g, r.value);
}

/** The rest of a rendering once an expression went to JSONata: each value awaited, in order (a failure thrown back in where it was awaited). */
async function resumeRendering(g: Generator<Promise<unknown>, StepRequest, unknown>, first: Promise<unknown>): Promise<StepRequest> {
  let r: IteratorResult<Promise<unknown>, StepRequest> = { done: false, value: first };
  while (!r.done) {
    let value: unknown;
    try {
      value = await r.value;
    } catch (err) {
      r = g.throw(err);
      continue;
    }
    r = g.next(value);
  }
  return r.value;
}

/** The rendering of one step: yields the promise of a value JSONata evaluates, and is given its value back. */
function* rendering(step: CompiledStep, input: Record<string, unknown>, base: string,
                    env: NodeJS.ProcessEnv): Generator<Promise<unknown>, StepRequest, unknown> {
  const secrets: string[] = [];
  let bindings: Bindings | undefined;
  const bind = (): Bindings => bindings ??= {
    secret: (ref: unknown) => {
      const v = resolveSecret(String(ref), `$secret(${JSON.stringify(String(ref).slice(0, 80))})`, env);
      secrets.push(v);
      return v;
    },
  };
  const slow = async (e: Expression, where: string): Promise<unknown> => {
    try {
      return await e.evaluate(input, e.isFast ? undefined : bind());
    } catch (err) {
      const msg = err instanceof ExpressionError ? err.message : (err as Error).message;
      throw new RenderError(`${where}: ${msg}`);
    }
  };
  // The walker's value at once (no promise per expression); JSONata's through `slow`.
  const evaluate = (e: Expression, where: string): unknown => {
    const v = e.fastValue(input);
    return v !== NOT_FAST ? v : slow(e, where);
  };
  let path = '';
  for (const part of step.path) {
    if (typeof part === 'string') { path += part; continue; }
    let v = evaluate(part, `path {${part.text}}`);
    if (v instanceof Promise) v = yield v;
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
      throw new RenderError(`path {${part.text}}: ${v === undefined ? 'has no value' : `is ${describe(v)}, not a string or number`}`);
    }
    path += encodeURIComponent(String(v));
  }
  const headers: Record<string, string> = {};
  for (const [name, h] of step.headers) {
    let v: unknown;
    if ('secret' in h) {
      try {
        v = resolveSecret(h.secret, `header ${name}`, env);
      } catch (err) {
        throw new RenderError((err as Error).message);
      }
      secrets.push(v as string);
    } else {
      v = evaluate(h.expr, `header ${name}`);
      if (v instanceof Promise) v = yield v;
    }
    if (v === undefined || v === null) continue;
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') throw new RenderError(`header ${name}: is ${describe(v)}, not a string`);
    const text = String(v);
    if (/[\r\n\0]/.test(text)) throw new RenderError(`header ${name}: holds a line break`);
    headers[name.toLowerCase()] = text;
  }
  let body: string | undefined;
  if (step.body) {
    let v = evaluate(step.body, 'body');
    if (v instanceof Promise) v = yield v;
    if (v !== undefined) {
      body = step.form ? formBody(v) : JSON.stringify(v);
      if (body.length > MAX_BODY) throw new RenderError(`body: longer than ${MAX_BODY} characters`);
      headers['content-type'] = step.contentType;
    }
  }
  const { origin, target } = join(base, path);
  return { method: step.method, path, origin, target, headers, body, secrets };
}

/** An object of scalar values (an array value: the key repeated) as application/x-www-form-urlencoded. */
function formBody(v: unknown): string {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new RenderError(`body: a form body must be an object of values, not ${describe(v)}`);
  const p = new URLSearchParams();
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    for (const one of Array.isArray(x) ? x : [x]) {
      if (one !== null && typeof one === 'object') throw new RenderError(`body: form field ${k} is ${describe(one)}, not a value`);
      p.append(k, one === null || one === undefined ? '' : String(one));
    }
  }
  return p.toString();
}

/** base + path: the base URL's path without its trailing "/", then the step's path (a path of "" keeps the base whole). */
export function join(base: string, path: string): { origin: string; target: string } {
  let b = bases.get(base);
  if (b === undefined) {
    const problem = httpUrlProblem(base);
    if (problem !== null) b = { problem: `url ${redactUrl(base)} cannot be used: ${problem}`, origin: '', path: '', whole: '' };
    else {
      const u = new URL(base);
      b = { problem: null, origin: u.origin, path: u.pathname.replace(/\/+$/, ''), whole: `${u.pathname}${u.search}` };
    }
    if (bases.size >= BASES_KEPT) bases.clear();
    bases.set(base, b);
  }
  if (b.problem !== null) throw new RenderError(b.problem);
  return { origin: b.origin, target: path === '' ? b.whole : `${b.path}${path}` };
}

/** Base URLs parsed once each (a handler has one). */
const bases = new Map<string, { problem: string | null; origin: string; path: string; whole: string }>();
const BASES_KEPT = 256;

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'function') return 'a function';
  return typeof v;
}
