/**
 * espf.events.created_at as pgoutput writes it (timestamptz text, ISO DateStyle)
 * read into a Date without regular expressions: the one form a UTC server
 * writes, "2026-12-07 05:08:02.123456+00" (a fraction of 1 to 6 digits, or
 * none). Any other text (another time zone, a year below 1000, BC, infinity)
 * goes to `fallback`, the parser pg registers for timestamptz (postgres-date),
 * whose result this one equals: the same fields, the fraction turned into
 * milliseconds by the same `1000 * parseFloat(".ffffff")`, and Date.UTC, which
 * truncates it (test/unit/stream-timestamp.test.ts compares both).
 */
export function timestamptzParser(fallback: (text: string) => unknown): (text: string) => unknown {
  // The events of one transaction share their created_at (now(), the transaction's start):
  // the text seen last gives the Date made last (nothing changes a Date of an event).
  let lastText = '';
  let lastDate: Date | undefined;
  const parse = (s: string): unknown => {
    const n = s.length;
    if (n < 22 || n > 29 || n === 23 || s.charCodeAt(n - 3) !== PLUS || s.charCodeAt(n - 2) !== ZERO || s.charCodeAt(n - 1) !== ZERO) return fallback(s);
    if (s.charCodeAt(4) !== DASH || s.charCodeAt(7) !== DASH || s.charCodeAt(10) !== SPACE || s.charCodeAt(13) !== COLON || s.charCodeAt(16) !== COLON) return fallback(s);
    const year = digits(s, 0, 4);
    const month = digits(s, 5, 7);
    const day = digits(s, 8, 10);
    const hour = digits(s, 11, 13);
    const minute = digits(s, 14, 16);
    const second = digits(s, 17, 19);
    if (year < 1000 || month < 0 || day < 0 || hour < 0 || minute < 0 || second < 0) return fallback(s);
    let ms = 0;
    if (n > 22) {
      if (s.charCodeAt(19) !== DOT || digits(s, 20, n - 3) < 0) return fallback(s);
      ms = 1000 * parseFloat(s.slice(19, n - 3));
    }
    return new Date(Date.UTC(year, month - 1, day, hour, minute, second, ms));
  };
  return (s) => {
    if (s === lastText && lastDate !== undefined) return lastDate;
    const d = parse(s);
    if (d instanceof Date) { lastText = s; lastDate = d; }
    return d;
  };
}

const PLUS = 43;
const DASH = 45;
const DOT = 46;
const ZERO = 48;
const COLON = 58;
const SPACE = 32;

/** The decimal number written in s[from, to), or -1 when a character there is not a digit. */
function digits(s: string, from: number, to: number): number {
  let v = 0;
  for (let i = from; i < to; i++) {
    const d = s.charCodeAt(i) - ZERO;
    if (d < 0 || d > 9) return -1;
    v = v * 10 + d;
  }
  return v;
}
