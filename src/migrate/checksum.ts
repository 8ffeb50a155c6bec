import { createHash } from 'node:crypto';

/**
 * The checksum espf.migrations records for a migration: the sha256 of the file
 * without its comment-only lines and blank lines, prefixed `sql-sha256:` (a
 * database migrated before this scheme holds the bare sha256 of the whole file).
 * Rewording a comment that has a line of its own does not change it; any other
 * change does, a comment after a statement on the same line included. The same
 * sum in a shell (docs/dba.md, By hand with psql):
 *   LC_ALL=C grep -Ev '^[[:space:]]*(--.*)?$' FILE | sha256sum
 */
export const STATEMENT_SUM_PREFIX = 'sql-sha256:';

/** A line that is blank, or whitespace then `--` and anything: what the checksum leaves out. */
const COMMENT_OR_BLANK_LINE = /^[ \t\n\v\f\r]*(?:--.*)?$/s;

/** The lines the checksum covers, each ending in a newline (as grep prints them). */
export function statementLines(text: string): string {
  return text.split('\n').filter((line) => !COMMENT_OR_BLANK_LINE.test(line)).map((line) => `${line}\n`).join('');
}

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** What espf migrate records for a migration file. */
export function statementSum(text: string): string {
  return STATEMENT_SUM_PREFIX + sha256(statementLines(text));
}

/**
 * migrations/released.sha256: for every released version of a migration whose
 * comments were reworded since, the sha256 of its whole file (what that release
 * recorded) and its statement sum, one line each:
 *   <sha256 of the file>  sql-sha256:<hex>  migrations/NNNN_name.sql
 * A recorded whole-file sum stands for the current file only when their statement
 * sums are equal. Returns file name → (whole-file sum → statement sum).
 */
export function parseReleasedSums(text: string): Map<string, Map<string, string>> {
  const sums = new Map<string, Map<string, string>>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([0-9a-f]{64}) +(sql-sha256:[0-9a-f]{64}) +migrations\/(\d{4}_[a-z0-9_]+\.sql)$/.exec(line);
    const [, whole, statements, name] = m ?? [];
    if (!whole || !statements || !name) {
      throw new Error(`migrations/released.sha256: not "<sha256>  sql-sha256:<sha256>  migrations/NNNN_name.sql": ${line}`);
    }
    const versions = sums.get(name) ?? new Map<string, string>();
    versions.set(whole, statements);
    sums.set(name, versions);
  }
  return sums;
}
