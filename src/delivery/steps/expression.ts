import { createRequire } from 'node:module';
import type jsonata from 'jsonata';

/**
 * JSONata, loaded on the first compile: `espf run` without request steps never
 * loads it (about 6 MB less resident memory, docs/benchmarks.md "espf run per
 * event and memory (2026-12-07)").
 */
let library: typeof jsonata | undefined;
function jsonataLibrary(): typeof jsonata {
  return library ??= createRequire(import.meta.url)('jsonata') as typeof jsonata;
}

/**
 * The limits of one evaluation (JSONata's own guardrails, checked on every
 * step of its evaluator): an expression that runs longer than `timeout` ms,
 * nests deeper than `stack`, or builds a sequence longer than `sequence` is
 * stopped with error D1012, D1011 or D2015; the attempt fails with that reason.
 */
export const EXPRESSION_LIMITS = { timeout: 250, stack: 300, sequence: 100_000 } as const;

/** An expression that does not compile, or failed to evaluate: JSONata's message, code and position. */
export class ExpressionError extends Error {
  readonly code = 'ESPF_STEP_EXPRESSION';
  constructor(message: string, readonly jsonataCode: string | null, readonly position: number | null) {
    super(message);
  }
}

/** JSONata throws plain objects ({code, position, token, message}): one line of it. */
export function expressionError(err: unknown): ExpressionError {
  if (err instanceof ExpressionError) return err;
  const e = err as { code?: unknown; position?: unknown; message?: unknown; value?: unknown } | null;
  const code = typeof e?.code === 'string' ? e.code : null;
  const position = typeof e?.position === 'number' ? e.position : null;
  let msg = typeof e?.message === 'string' ? e.message : String(err);
  if (code === 'D1012') msg = `stopped: ran longer than ${EXPRESSION_LIMITS.timeout} ms`;
  else if (code === 'D1011') msg = `stopped: nested deeper than ${EXPRESSION_LIMITS.stack}`;
  else if (code === 'D2015') msg = `stopped: a sequence longer than ${EXPRESSION_LIMITS.sequence}`;
  const where = [code, position !== null && position > 0 ? `at character ${position}` : null].filter(Boolean).join(' ');
  return new ExpressionError(`${msg.replace(/\s+/g, ' ').trim()}${where ? ` (${where})` : ''}`, code, position);
}

/** What the evaluator is given besides the input: bindings such as $secret. */
export type Bindings = Record<string, unknown>;

const BAIL = Symbol('bail');
/** What fastValue() gives when the walker cannot evaluate the expression for this input. */
export const NOT_FAST: unknown = BAIL;
type Fast = (input: unknown) => unknown;

/**
 * One JSONata expression, compiled once per configuration (never per event).
 * The shapes most steps use, a path of plain names (`variables.imsi`), a
 * literal, and an object of those (`{"imsi": variables.imsi, "amf": "8000"}`),
 * are evaluated by a small walker without the (asynchronous) JSONata evaluator;
 * anything else, and a path that meets an array, goes to JSONata.
 */
export class Expression {
  private readonly compiled: jsonata.Expression;
  private readonly fast: Fast | null;

  private constructor(readonly text: string, compiled: jsonata.Expression) {
    this.compiled = compiled;
    this.fast = fastOf(compiled.ast());
  }

  /** Compiles `text`; throws ExpressionError. */
  static compile(text: string): Expression {
    let compiled: jsonata.Expression;
    try {
      compiled = jsonataLibrary()(text, { ...EXPRESSION_LIMITS });
    } catch (err) {
      throw expressionError(err);
    }
    return new Expression(text, compiled);
  }

  /**
   * Whether the expression may read the top-level field `name` of its input
   * (a static check of its syntax tree, conservative: true when unsure).
   * False only for an expression made of paths, literals and operators that
   * never names `name`, and uses no variable ($, $$, a function: $string()
   * reads the context), wildcard (*, **) or parent (%).
   */
  mayRead(name: string): boolean {
    this.names ??= namesRead(this.compiled.ast());
    return this.names === ANY_NAME || this.names.has(name);
  }

  private names: ReadonlySet<string> | typeof ANY_NAME | undefined;

  /** True when evaluate() never enters the JSONata evaluator for a plain input. */
  get isFast(): boolean { return this.fast !== null; }

  /** The walker's value for `input`, without a promise; NOT_FAST when evaluate() must be called. */
  fastValue(input: Record<string, unknown>): unknown {
    return this.fast ? this.fast(input) : BAIL;
  }

  /** The value for `input` (undefined: nothing); throws ExpressionError. */
  async evaluate(input: Record<string, unknown>, bindings?: Bindings): Promise<unknown> {
    if (this.fast) {
      const v = this.fast(input);
      if (v !== BAIL) return v;
    }
    try {
      return plain(await this.compiled.evaluate(input, bindings));
    } catch (err) {
      throw expressionError(err);
    }
  }
}

/** JSONata marks its result sequences with extra properties: a plain copy for JSON. */
function plain(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(plain);
  return v;
}

const ANY_NAME = Symbol('any name');

/** The node types whose meaning is fixed by the names they hold (a name reads a field; the others compute). */
const PLAIN_TYPES = new Set(['path', 'name', 'string', 'number', 'value', 'regex', 'binary', 'unary', 'condition', 'filter', 'block']);

/** Every name an expression's tree holds, or ANY_NAME when a node may read fields it does not name. */
function namesRead(ast: jsonata.ExprNode): ReadonlySet<string> | typeof ANY_NAME {
  const names = new Set<string>();
  const visit = (v: unknown): boolean => {
    if (Array.isArray(v)) return v.every(visit);
    if (v === null || typeof v !== 'object') return true;
    const n = v as { type?: unknown; value?: unknown };
    if (n.type !== undefined) {
      if (typeof n.type !== 'string' || !PLAIN_TYPES.has(n.type)) return false;
      if (n.type === 'name') {
        if (typeof n.value !== 'string') return false;
        names.add(n.value);
      }
    }
    return Object.values(v).every(visit);
  };
  return visit(ast) ? names : ANY_NAME;
}

type Node = Omit<jsonata.ExprNode, 'type'> & { type: string; lhs?: unknown; steps?: Node[] };

const NAME_KEYS = new Set(['type', 'value', 'position']);

function fastOf(ast: jsonata.ExprNode): Fast | null {
  const n = ast as unknown as Node;
  if (n.type === 'string' || n.type === 'number' || n.type === 'value') {
    const v = n.value as unknown;
    return () => v;
  }
  if (n.type === 'path' && Object.keys(n).every((k) => k === 'type' || k === 'steps') && n.steps
      && n.steps.every((s) => s.type === 'name' && typeof s.value === 'string' && Object.keys(s).every((k) => NAME_KEYS.has(k)))) {
    const names = n.steps.map((s) => s.value as string);
    // Indexed loops, no iterator: these run for every expression of every event.
    return (input) => {
      let v: unknown = input;
      for (let i = 0; i < names.length; i++) {
        if (v === null || typeof v !== 'object' || Array.isArray(v)) return v === undefined || v === null || typeof v !== 'object' ? undefined : BAIL;
        const name = names[i]!;
        if (!Object.hasOwn(v, name)) return undefined;
        v = (v as Record<string, unknown>)[name];
      }
      return Array.isArray(v) ? BAIL : v;
    };
  }
  if (n.type === 'unary' && n.value === '{' && Array.isArray(n.lhs) && Object.keys(n).every((k) => k === 'type' || k === 'value' || k === 'position' || k === 'lhs')) {
    const pairs: [string, Fast][] = [];
    for (const pair of n.lhs as [Node, Node][]) {
      const [k, v] = pair;
      if (k.type !== 'string' || typeof k.value !== 'string') return null;
      const f = fastOf(v as unknown as jsonata.ExprNode);
      if (!f) return null;
      pairs.push([k.value, f]);
    }
    if (new Set(pairs.map(([k]) => k)).size !== pairs.length) return null; // JSONata refuses a duplicate key: its error
    const keys = pairs.map(([k]) => k);
    const values = pairs.map(([, f]) => f);
    return (input) => {
      const o: Record<string, unknown> = {};
      for (let i = 0; i < keys.length; i++) {
        const v = values[i]!(input);
        if (v === BAIL) return BAIL;
        if (v !== undefined) o[keys[i]!] = v;
      }
      return o;
    };
  }
  return null;
}
