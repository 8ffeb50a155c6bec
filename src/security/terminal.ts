/**
 * Text from the database, a receiver or the command line shown on a terminal:
 * control characters (C0, DEL, C1: escape sequences, bell, carriage return) and
 * the Unicode characters that reorder or break lines (bidi embeddings,
 * overrides, isolates and marks; line and paragraph separators) are written as
 * visible escapes (\x1b, \u202e), so that no value can clear, recolour or
 * spoof an operator's screen. JSON output is left exact.
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

export function escapeTerminal(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    if (c === '\n') return '\\n';
    if (c === '\r') return '\\r';
    if (c === '\t') return '\\t';
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/** A value from the command line quoted for a one-line message: escaped, and shortened past `max` characters. */
export function quoteArg(value: string, max = 80): string {
  const chars = [...value];
  if (chars.length <= max) return `'${escapeTerminal(value)}'`;
  return `'${escapeTerminal(chars.slice(0, max).join(''))}…' (${chars.length} characters)`;
}
