// PostgreSQL array literals (`{1,2,NULL}`, `{EventSender,"a \"b\""}`) of one
// column of a batch, built with one join: espf.record_deliveries
// (sql/400_results.sql) takes its batch as one array per column. node-postgres
// would write the same literal from a JS array, but with four strings per
// element (each quoted and escaped); on the record stage's path, once per
// delivery and column, that was a sixth of what `espf run` allocated per event
// (docs/benchmarks.md, "Fewer objects per event").

/** Text that can stand unquoted: not empty, no white space, quote, backslash, brace or comma, and not NULL. */
const BARE = /^[^\s"\\{},]+$/;
const NULL_WORD = /^null$/i;
const ESCAPED = /["\\]/g;

/** A text element as array input reads it back: bare when it can be, else quoted with `"` and `\` escaped. */
function textElement(s: string): string {
  if (BARE.test(s) && !NULL_WORD.test(s)) return s;
  return `"${s.replace(ESCAPED, '\\$&')}"`;
}

/** Quoted forms of the values that recur in a batch (handler names, states, event types). */
const recurring = new Map<string, string>();

/** A literal of text values; null is NULL. `recur`: the values are few and recur (their elements are kept). */
export function textArray(values: readonly (string | null)[], recur = false): string {
  const parts = new Array<string>(values.length);
  for (let k = 0; k < values.length; k++) {
    const v = values[k];
    if (v === null || v === undefined) { parts[k] = 'NULL'; continue; }
    if (!recur) { parts[k] = textElement(v); continue; }
    let e = recurring.get(v);
    if (e === undefined) {
      if (recurring.size >= 1024) recurring.clear();
      recurring.set(v, e = textElement(v));
    }
    parts[k] = e;
  }
  return `{${parts.join(',')}}`;
}

/** A literal of numbers; null is NULL. A number that is not finite is refused (no column could hold it). */
export function numberArray(values: readonly (number | null)[]): string {
  const parts = new Array<string | number>(values.length);
  for (let k = 0; k < values.length; k++) {
    const v = values[k];
    if (v === null || v === undefined) { parts[k] = 'NULL'; continue; }
    if (!Number.isFinite(v)) throw new RangeError(`not a finite number: ${v}`);
    parts[k] = v;
  }
  return `{${parts.join(',')}}`;
}
