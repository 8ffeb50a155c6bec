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
  /** origin + target: the URL sent to, as messages and provisioning.log show it (its passwords masked there). */
  readonly url: string;
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

/** The secrets of a request that carries none (shared: nobody changes a request's secrets). */
const NO_SECRETS: readonly string[] = Object.freeze([]);

/**
 * What stops a rendering when the expression of slot `k` (the k-th expression
 * of the step: path, headers, body, in order) needs JSONata's evaluator and
 * its value is not known yet. Not an Error: no stack is taken.
 */
class NeedsEvaluator {
  constructor(readonly k: number, readonly e: Expression, readonly where: string) {}
}

/** The value of slot `k` JSONata gave (`known`, filled by renderWithEvaluator); NeedsEvaluator when there is none yet. */
function evaluated(known: readonly unknown[] | null, k: number, e: Expression, where: string): unknown {
  if (known !== null && k < known.length && known[k] !== UNKNOWN) return known[k];
  throw new NeedsEvaluator(k, e, where);
}

/** A slot of `known` that JSONata has not evaluated. */
const UNKNOWN = Symbol('unknown');

/**
 * Renders one step for an event: its path below the handler's base URL
 * (`base`, the handler's one URL), headers and body. `env` resolves `env:NAME`
 * secrets (header values written so, and `$secret("env:NAME")` in an expression).
 * When the walker evaluates every expression (Expression.fastValue) the request
 * comes at once, without a promise, a generator or a closure; otherwise a
 * promise of it. A step that cannot be rendered gives a promise rejected with
 * RenderError.
 */
export function renderStep(step: CompiledStep, input: Record<string, unknown>, base: string,
                           env: NodeJS.ProcessEnv = process.env): StepRequest | Promise<StepRequest> {
  try {
    return assemble(step, input, base, env, null, NO_SECRETS);
  } catch (err) {
    if (err instanceof NeedsEvaluator) return renderWithEvaluator(step, input, base, env, err);
    return Promise.reject(err as Error); // a step that cannot be rendered: always a rejection
  }
}

/**
 * A rendering in which some expression goes to JSONata: each such value
 * awaited when the rendering reaches it (in order, after the checks of what
 * comes before it, as the walker's values are checked), then the rendering
 * starts over with the values known so far (the walker's values are computed
 * again: they cost less than keeping them). A failure of an evaluation is a
 * RenderError naming its field.
 */
async function renderWithEvaluator(step: CompiledStep, input: Record<string, unknown>, base: string,
                                   env: NodeJS.ProcessEnv, first: NeedsEvaluator): Promise<StepRequest> {
  const known: unknown[] = [];
  const secrets: string[] = [];
  const bindings: Bindings = {
    secret: (ref: unknown) => {
      const v = resolveSecret(String(ref), `$secret(${JSON.stringify(String(ref).slice(0, 80))})`, env);
      secrets.push(v);
      return v;
    },
  };
  let need = first;
  for (;;) {
    let v: unknown;
    try {
      v = await need.e.evaluate(input, need.e.isFast ? undefined : bindings);
    } catch (err) {
      const msg = err instanceof ExpressionError ? err.message : (err as Error).message;
      throw new RenderError(`${need.where}: ${msg}`);
    }
    while (known.length < need.k) known.push(UNKNOWN);
    known[need.k] = v;
    try {
      return assemble(step, input, base, env, known, secrets);
    } catch (err) {
      if (!(err instanceof NeedsEvaluator)) throw err;
      need = err;
    }
  }
}

/**
 * The request of one step from its expressions' values: the walker's, or
 * those JSONata gave (`known`, by slot); throws NeedsEvaluator for the first
 * value it lacks, RenderError for the first value its place cannot hold.
 * `evalSecrets`: what the evaluations' $secret() gave.
 */
function assemble(step: CompiledStep, input: Record<string, unknown>, base: string, env: NodeJS.ProcessEnv,
                  known: readonly unknown[] | null, evalSecrets: readonly string[]): StepRequest {
  let k = 0;
  let path = '';
  for (let i = 0; i < step.path.length; i++) {
    const part = step.path[i]!;
    if (typeof part === 'string') { path += part; continue; }
    let v = part.fastValue(input);
    if (v === NOT_FAST) v = evaluated(known, k, part, `path {${part.text}}`);
    k++;
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
      throw new RenderError(`path {${part.text}}: ${v === undefined ? 'has no value' : `is ${describe(v)}, not a string or number`}`);
    }
    path += encodeURIComponent(String(v));
  }
  let secrets = evalSecrets;
  const headers: Record<string, string> = {};
  for (let i = 0; i < step.headers.length; i++) {
    const [name, h] = step.headers[i]!;
    let v: unknown;
    if ('secret' in h) {
      try {
        v = resolveSecret(h.secret, `header ${name}`, env);
      } catch (err) {
        throw new RenderError((err as Error).message);
      }
      secrets = [...secrets, v as string];
    } else {
      v = h.expr.fastValue(input);
      if (v === NOT_FAST) v = evaluated(known, k, h.expr, `header ${name}`);
      k++;
    }
    if (v === undefined || v === null) continue;
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') throw new RenderError(`header ${name}: is ${describe(v)}, not a string`);
    const text = String(v);
    if (/[\r\n\0]/.test(text)) throw new RenderError(`header ${name}: holds a line break`);
    headers[name.toLowerCase()] = text;
  }
  let body: string | undefined;
  if (step.body) {
    let v = step.body.fastValue(input);
    if (v === NOT_FAST) v = evaluated(known, k, step.body, 'body');
    if (v !== undefined) {
      body = step.form ? formBody(v) : JSON.stringify(v);
      if (body.length > MAX_BODY) throw new RenderError(`body: longer than ${MAX_BODY} characters`);
      headers['content-type'] = step.contentType;
    }
  }
  const b = baseOf(base);
  if (b.problem !== null) throw new RenderError(b.problem);
  const target = path === '' ? b.whole : `${b.path}${path}`;
  return {
    method: step.method, path, origin: b.origin, target, url: path === '' ? b.wholeUrl : `${b.origin}${target}`, headers, body,
    secrets: secrets.length === 0 ? NO_SECRETS : secrets,
  };
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
  const b = baseOf(base);
  if (b.problem !== null) throw new RenderError(b.problem);
  return { origin: b.origin, target: path === '' ? b.whole : `${b.path}${path}` };
}

/** A base URL parsed: its origin, its path without the trailing "/", its path and query whole (and with the origin); or why it cannot be used. */
interface Base { readonly problem: string | null; readonly origin: string; readonly path: string; readonly whole: string; readonly wholeUrl: string }

function baseOf(base: string): Base {
  let b = bases.get(base);
  if (b === undefined) {
    const problem = httpUrlProblem(base);
    if (problem !== null) b = { problem: `url ${redactUrl(base)} cannot be used: ${problem}`, origin: '', path: '', whole: '', wholeUrl: '' };
    else {
      const u = new URL(base);
      const whole = `${u.pathname}${u.search}`;
      b = { problem: null, origin: u.origin, path: u.pathname.replace(/\/+$/, ''), whole, wholeUrl: `${u.origin}${whole}` };
    }
    if (bases.size >= BASES_KEPT) bases.clear();
    bases.set(base, b);
  }
  return b;
}

/** Base URLs parsed once each (a handler has one). */
const bases = new Map<string, Base>();
const BASES_KEPT = 256;

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'function') return 'a function';
  return typeof v;
}
