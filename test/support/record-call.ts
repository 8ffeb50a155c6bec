// The records of one espf.record_deliveries call read back from its parameters
// (src/db/deliveries.ts sends one array literal per column, src/db/array-literal.ts),
// for the pure tests whose stand-in pool keeps what the record stage wrote.

/** The columns in the order recordDeliveries sends them; numbers parsed, step_answers as JSON. */
const COLUMNS: readonly [string, 'number' | 'text' | 'json'][] = [
  ['i_event', 'number'], ['handler', 'text'], ['state', 'text'], ['event_type', 'text'], ['order_key', 'text'],
  ['i_account', 'number'], ['commit_lsn', 'text'], ['attempts', 'number'], ['urls_done', 'number'],
  ['last_http_status', 'number'], ['last_error', 'text'], ['next_attempt_at', 'number'], ['committed_at', 'number'],
  ['first_attempt_at', 'number'], ['last_attempt_at', 'number'], ['finished_at', 'number'], ['created_at', 'number'],
  ['steps_done', 'number'], ['step_answers', 'json'],
];

/** The elements of a one-dimensional array literal: null for NULL, else the element's text. */
export function arrayElements(literal: string): (string | null)[] {
  if (literal[0] !== '{' || literal[literal.length - 1] !== '}') throw new Error(`not an array literal: ${literal.slice(0, 40)}`);
  const out: (string | null)[] = [];
  let i = 1;
  const end = literal.length - 1;
  while (i < end) {
    if (literal[i] === '"') {
      let s = '';
      for (i++; literal[i] !== '"'; i++) s += literal[i] === '\\' ? literal[++i] : literal[i];
      out.push(s);
      i++;
    } else {
      let j = i;
      while (j < end && literal[j] !== ',') j++;
      const token = literal.slice(i, j);
      out.push(token === 'NULL' ? null : token);
      i = j;
    }
    if (literal[i] === ',') i++;
  }
  return out;
}

/** The rows of one call, from the values of its query (the instance first, then one literal per column). */
export function recordsOfCall(values: readonly unknown[]): Record<string, unknown>[] {
  const columns = COLUMNS.map(([name, kind], c) => ({ name, kind, elements: arrayElements(values[1 + c] as string) }));
  return columns[0]!.elements.map((_, k) => Object.fromEntries(columns.map(({ name, kind, elements }) => {
    const e = elements[k]!;
    return [name, e === null ? null : kind === 'number' ? Number(e) : kind === 'json' ? JSON.parse(e) : e];
  })));
}
