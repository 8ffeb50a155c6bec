import type { StepRow } from '../../db/config.ts';
import { ENV_REF } from '../../security/secret-ref.ts';
import { Expression, expressionError } from './expression.ts';

export type { StepRow };

/** The event type of the rows for every type without rows of its own. */
export const ANY_TYPE = '*';

/** A header value: an expression, or an `env:NAME` secret (src/security/secret-ref.ts). */
export type HeaderValue = { readonly secret: string } | { readonly expr: Expression };

/** A path template: literal text and {expression} parts, in order. */
export type PathPart = string | Expression;

/** One step, its expressions compiled. */
export interface CompiledStep {
  readonly index: number;        // 0-based position in its sequence
  readonly number: number;       // the row's step number
  readonly name: string | null;
  readonly method: string;
  readonly pathText: string;
  readonly path: readonly PathPart[];
  readonly headers: readonly (readonly [string, HeaderValue])[];
  readonly body: Expression | null;
  readonly form: boolean;        // application/x-www-form-urlencoded
  readonly contentType: string;
  readonly success: Expression | null;
  readonly refuse: Expression | null;
  readonly exists: Expression | null;
  /** What of its answer is read: everything for a step a later one follows (its answer is kept, and read as steps[…]). */
  readonly answer: AnswerNeeds;
}

/**
 * What of a step's answer is read beyond its status (src/delivery/steps/run.ts).
 * A step a later step follows keeps its whole answer (espf.event_deliveries
 * step_answers; the later steps read it). Of the last step only its rules
 * read it: its headers and parsed body when a rule may read `headers` or
 * `body` (Expression.mayRead, conservative), its text when it has a rule (a
 * 2xx that a rule does not accept is quoted in the error). An answer that is
 * not 2xx is always read whole (quoted in the error; Retry-After).
 */
export interface AnswerNeeds {
  readonly headers: boolean;
  readonly body: boolean;
  readonly text: boolean;
}

const WHOLE_ANSWER: AnswerNeeds = { headers: true, body: true, text: true };

function answerNeeds(last: boolean, rules: readonly (Expression | null)[]): AnswerNeeds {
  if (!last) return WHOLE_ANSWER;
  const set = rules.filter((e): e is Expression => e !== null);
  return {
    headers: set.some((e) => e.mayRead('headers')),
    body: set.some((e) => e.mayRead('body')),
    text: set.length > 0,
  };
}

/** An expression of a step that does not compile. */
export interface StepProblem {
  readonly handler: string;
  readonly eventType: string;
  readonly step: number;
  /** path, headers.<Name>, body, success_when, refuse_when, exists_when */
  readonly field: string;
  readonly message: string;
}

export function describeProblem(p: StepProblem): string {
  return `handler ${p.handler}, type ${p.eventType}, step ${p.step} (${p.field}): ${p.message}`;
}

/**
 * The request steps of one http handler, compiled once per configuration:
 * the steps of each event type, and of '*' for the others. A handler with
 * problems sends nothing (its deliveries wait) until its rows are mended.
 */
export class StepPlan {
  /** The steps of '*' when no type has steps of its own (the common case: one lookup less per event), else null. */
  private readonly onlyAny: readonly CompiledStep[] | null;

  private constructor(
    private readonly byType: ReadonlyMap<string, readonly CompiledStep[]>,
    readonly problems: readonly StepProblem[],
  ) {
    this.onlyAny = byType.size === 1 ? byType.get(ANY_TYPE) ?? null : null;
  }

  /** Compiles the rows of one handler (any order). */
  static compile(rows: readonly StepRow[]): StepPlan {
    const problems: StepProblem[] = [];
    const groups = new Map<string, StepRow[]>();
    for (const r of [...rows].sort((a, b) => a.step - b.step)) {
      let g = groups.get(r.event_type);
      if (!g) groups.set(r.event_type, g = []);
      g.push(r);
    }
    const byType = new Map<string, CompiledStep[]>();
    for (const [type, group] of groups) {
      byType.set(type, group.map((r, index) => compileStep(r, index, index === group.length - 1, (field, message) =>
        problems.push({ handler: r.handler, eventType: type, step: r.step, field, message }))));
    }
    return new StepPlan(byType, problems);
  }

  /** The steps for an event of `eventType`; empty: skipped (the handler has steps, none for this type). */
  stepsFor(eventType: string): readonly CompiledStep[] {
    return this.onlyAny ?? this.byType.get(eventType) ?? this.byType.get(ANY_TYPE) ?? [];
  }

  /** The event types with steps of their own ('*' included). */
  get types(): string[] { return [...this.byType.keys()]; }
}

/** An expression that never evaluates: what a problem leaves in place of the one that did not compile (made on first use). */
let broken: Expression | undefined;
function brokenExpression(): Expression {
  return broken ??= Expression.compile('$error("does not compile")');
}

function compileStep(r: StepRow, index: number, last: boolean, problem: (field: string, message: string) => void): CompiledStep {
  const expr = (field: string, text: string | null): Expression | null => {
    if (text === null) return null;
    try {
      return Expression.compile(text);
    } catch (err) {
      problem(field, expressionError(err).message);
      return brokenExpression();
    }
  };
  let path: PathPart[] = [];
  try {
    path = parsePath(r.path).map((p) => typeof p === 'string' ? p : expr('path', p.text) ?? brokenExpression());
  } catch (err) {
    problem('path', (err as Error).message);
  }
  for (const p of path) {
    if (typeof p === 'string' && !URL_TEXT.test(p)) problem('path', `the text ${JSON.stringify(p.slice(0, 80))} has a character a URL path cannot hold: percent-encode it, or put it in {…}`);
  }
  const headers: [string, HeaderValue][] = [];
  for (const [name, text] of Object.entries(r.headers ?? {}).sort(([a], [b]) => a.localeCompare(b))) {
    if (ENV_REF.test(text)) headers.push([name, { secret: text }]);
    else headers.push([name, { expr: expr(`headers.${name}`, text) ?? brokenExpression() }]);
  }
  const body = expr('body', r.body); // compiled in this order: problems are reported in it
  const success = expr('success_when', r.success_when);
  const refuse = expr('refuse_when', r.refuse_when);
  const exists = expr('exists_when', r.exists_when);
  return {
    index, number: r.step, name: r.name, method: r.method, pathText: r.path, path, headers,
    body, form: r.content_type === 'application/x-www-form-urlencoded', contentType: r.content_type,
    success, refuse, exists, answer: answerNeeds(last, [success, refuse, exists]),
  };
}

/** What the literal text of a path may hold (RFC 3986 path and query characters, and %XX). */
const URL_TEXT = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*$/;

/** "/subscriber/imsi/{variables.imsi}" → literal text and expressions ({…} nests: an object constructor may stand inside). */
export function parsePath(text: string): (string | { text: string })[] {
  const parts: (string | { text: string })[] = [];
  let literal = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '}') throw new Error(`"}" at character ${i + 1} closes no "{"`);
    if (c !== '{') { literal += c; continue; }
    let depth = 1;
    let j = i + 1;
    for (; j < text.length && depth > 0; j++) {
      if (text[j] === '{') depth++;
      else if (text[j] === '}') depth--;
    }
    if (depth > 0) throw new Error(`"{" at character ${i + 1} is not closed`);
    const inner = text.slice(i + 1, j - 1);
    if (inner.trim() === '') throw new Error(`"{}" at character ${i + 1} holds no expression`);
    if (literal) parts.push(literal);
    literal = '';
    parts.push({ text: inner });
    i = j - 1;
  }
  if (literal) parts.push(literal);
  return parts;
}
