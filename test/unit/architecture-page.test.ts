import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from '../../src/paths.ts';

/**
 * docs/architecture.md is the map of the code: every file under src/ is named
 * on it (by its path from the repository root), and every path under src/,
 * sql/ or migrations/ it names exists. A file added, moved or removed fails
 * here until the page follows.
 */

const PAGE = 'docs/architecture.md';

/** Every file under `dir` (relative to the repository root), sorted. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) out.push(...filesUnder(rel));
    else out.push(rel);
  }
  return out.sort();
}

/** The paths under src/, sql/ and migrations/ a text names (a folder ends with `/`). */
export function namedPaths(text: string): Set<string> {
  const found = new Set<string>();
  for (const m of text.matchAll(/(?<![\w./-])((?:src|sql|migrations)\/[A-Za-z0-9_./-]*)/g)) {
    found.add(m[1]!.replace(/[.]+$/, ''));   // a sentence's full stop is not part of the path
  }
  return found;
}

describe(`${PAGE}: the map of src/`, () => {
  const page = readFileSync(path.join(ROOT, PAGE), 'utf8');
  const named = namedPaths(page);

  it('reads the paths a text names', () => {
    assert.deepEqual([...namedPaths('`src/run/sender.ts` (and sql/400_results.sql.) in src/console/, not resrc/x or dist/src/y')],
      ['src/run/sender.ts', 'sql/400_results.sql', 'src/console/']);
  });

  it('names every file under src/', () => {
    const missing = filesUnder('src').filter((f) => !named.has(f));
    assert.deepEqual(missing, [], `files under src/ that ${PAGE} does not name: add each, with its job`);
  });

  it('names only paths under src/, sql/ and migrations/ that exist', () => {
    const gone = [...named].filter((p) => !existsSync(path.join(ROOT, p)));
    assert.deepEqual(gone, [], `paths ${PAGE} names that do not exist`);
  });
});
