// The records of one espf.record_deliveries call read back from its parameters
// (src/db/deliveries.ts sends one array literal per column, step_answers as JSON text),
// for the pure tests whose stand-in pool keeps what the record stage wrote.

/** The columns in the order recordDeliveries sends them; step_answers as JSON text. */
const COLUMNS: readonly [string, 'number' | 'text' | 'json'][] = [
  ['i_event', 'number'], ['handler', 'text'], ['state', 'text'], ['event_type', 'text'], ['order_key', 'text'],
  ['i_account', 'number'], ['commit_lsn', 'text'], ['attempts', 'number'], ['urls_done', 'number'],
  ['last_http_status', 'number'], ['last_error', 'text'], ['next_attempt_at', 'number'], ['committed_at', 'number'],
  ['first_attempt_at', 'number'], ['last_attempt_at', 'number'], ['finished_at', 'number'], ['created_at', 'number'],
  ['steps_done', 'number'], ['step_answers', 'json'],
];

/** The elements of a one-dimensional array literal as PostgreSQL's array input reads them (NULL: null). */
export function literalElements(literal: string): (string | null)[] {
  if (literal === '{}') return [];
  const out: (string | null)[] = [];
  let i = 1;
  while (i < literal.length) {
    let e = '';
    if (literal[i] === '"') {
      for (i++; literal[i] !== '"'; i++) e += literal[i] === '\\' ? literal[++i] : literal[i];
      out.push(e);
      i++;
    } else {
      for (; literal[i] !== ',' && literal[i] !== '}'; i++) e += literal[i];
      out.push(/^null$/i.test(e) ? null : e);
    }
    i++; // the comma, or the closing brace
  }
  return out;
}

/**
 * The rows of one call, from the values of its query (the instance first, then one array
 * literal per column, then `fresh`: a literal of t and f, or null when no record is fresh).
 */
export function recordsOfCall(values: readonly unknown[]): Record<string, unknown>[] {
  const columns = COLUMNS.map(([name, kind], c) => ({ name, kind, elements: literalElements(values[1 + c] as string) }));
  const fresh = values[1 + COLUMNS.length] == null ? [] : literalElements(values[1 + COLUMNS.length] as string);
  return columns[0]!.elements.map((_, k) => ({
    ...Object.fromEntries(columns.map(({ name, kind, elements }) => {
      const e = elements[k] ?? null;
      return [name, e === null ? null : kind === 'json' ? JSON.parse(e) : kind === 'number' ? Number(e) : e];
    })),
    fresh: fresh[k] === 't',
  }));
}
