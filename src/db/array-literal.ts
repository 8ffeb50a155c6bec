// PostgreSQL array literals (`{1,2,NULL}`, `{"a","b \"c\""}`) built as text,
// for a statement that takes a batch as one array per column
// (espf.record_deliveries, sql/400_results.sql): PostgreSQL reads them in one
// pass each. Every text element is quoted (so an empty string, a comma, a
// brace, white space or the word NULL stay themselves); inside the quotes
// only `"` and `\` are escaped, as array input reads them.

const NEEDS_ESCAPE = /["\\]/;
const ESCAPED = /["\\]/g;

/** One text element, quoted; null is NULL. */
export function textElement(value: string | null): string {
  if (value === null) return 'NULL';
  return NEEDS_ESCAPE.test(value) ? `"${value.replace(ESCAPED, '\\$&')}"` : `"${value}"`;
}

/** One number element; null is NULL. A number that is not finite is refused (its column could not hold it). */
export function numberElement(value: number | null): string {
  if (value === null) return 'NULL';
  if (!Number.isFinite(value)) throw new RangeError(`not a finite number: ${value}`);
  return String(value);
}

/** One json or jsonb element: the value as JSON text, quoted; null (or undefined) is NULL. */
export function jsonElement(value: unknown): string {
  return value === null || value === undefined ? 'NULL' : textElement(JSON.stringify(value));
}

/** The array literal of elements already formatted by the functions above. */
export function arrayLiteral(elements: readonly string[]): string {
  return `{${elements.join(',')}}`;
}
