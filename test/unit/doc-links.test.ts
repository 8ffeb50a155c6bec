import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from '../../src/paths.ts';

/**
 * Every relative link of README.md and docs/*.md points to a file or folder of
 * the repository and, when it has a #fragment, to a heading of that page, by
 * GitHub's rules for heading anchors.
 */

/** The lines of a Markdown page outside fenced code blocks. */
export function proseLines(text: string): string[] {
  const out: string[] = [];
  let fence: string | null = null;
  for (const line of text.split('\n')) {
    const m = /^\s*(```+|~~~+)/.exec(line);
    if (m) {
      if (fence === null) fence = m[1]!.slice(0, 3);
      else if (m[1]!.startsWith(fence)) fence = null;
      continue;
    }
    if (fence === null) out.push(line);
  }
  return out;
}

/**
 * The anchor GitHub gives a heading: its text as rendered (inline code and
 * emphasis marks, link targets and HTML tags gone), lower case, every
 * character that is not a letter, a digit, `_`, `-` or a space dropped,
 * each space a hyphen; a repeated anchor gets -1, -2, … in page order.
 */
export function headingAnchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const anchors = new Set<string>();
  for (const line of proseLines(text)) {
    const m = /^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    // Code spans keep their text; outside them, links become their text and HTML tags and emphasis marks go.
    const rendered = m[1]!.split(/(`+[^`]*`+)/).map((part, i) => (i % 2 === 1
      ? part.replace(/`/g, '')
      : part.replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1').replace(/<\/?[a-z][a-z0-9-]*(\s[^>]*)?>/gi, '').replace(/[*_]{1,3}(?=\S)|(?<=\S)[*_]{1,3}/g, (mk) => (mk.includes('*') ? '' : mk)))).join('');
    const base = rendered.toLowerCase().replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '').replace(/ /g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    anchors.add(n === 0 ? base : `${base}-${n}`);
  }
  return anchors;
}

/** The targets of the inline links and images of a page (not those in code). */
export function linkTargets(text: string): string[] {
  const targets: string[] = [];
  for (const line of proseLines(text)) {
    const prose = line.replace(/(`+)[\s\S]*?\1/g, '');
    for (const m of prose.matchAll(/\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) targets.push(m[1]!);
  }
  return targets;
}

const pages = ['README.md', ...readdirSync(path.join(ROOT, 'docs')).filter((n) => n.endsWith('.md')).map((n) => `docs/${n}`)];

describe('links of README.md and docs/*.md', () => {
  it('computes anchors as GitHub does', () => {
    const anchors = headingAnchors([
      '# espf', '## Schema `espf`: configuration', '### `espf.notifications` (one row)',
      '## `espf handler enable|disable <handler>`', '## Tour: the seed\'s checklist with espf',
      '```sh', '# not a heading', '```', '## Metrics', '## Metrics', '### 2. Configure a handler',
      '## Tables (migrations/0011_console.sql)', '## Shards: 1 … 64 and back',
    ].join('\n'));
    assert.deepEqual([...anchors], [
      'espf', 'schema-espf-configuration', 'espfnotifications-one-row',
      'espf-handler-enabledisable-handler', 'tour-the-seeds-checklist-with-espf',
      'metrics', 'metrics-1', '2-configure-a-handler', 'tables-migrations0011_consolesql', 'shards-1--64-and-back',
    ]);
    assert.deepEqual(linkTargets('see [a](docs/a.md#x), ![b](b.png) and `[c](nope.md)`\n```\n[d](e.md)\n```'), ['docs/a.md#x', 'b.png']);
  });

  for (const page of pages) {
    it(`${page}: every relative link reaches a file and a heading`, () => {
      const text = readFileSync(path.join(ROOT, page), 'utf8');
      const broken: string[] = [];
      for (const target of linkTargets(text)) {
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue;       // http:, https:, mailto:
        const hash = target.indexOf('#');
        const file = hash < 0 ? target : target.slice(0, hash);
        const anchor = hash < 0 ? null : decodeURIComponent(target.slice(hash + 1));
        const resolved = file === '' ? path.join(ROOT, page) : path.resolve(path.dirname(path.join(ROOT, page)), decodeURIComponent(file));
        if (!resolved.startsWith(ROOT) || !existsSync(resolved)) {
          broken.push(`${target}: no such file`);
          continue;
        }
        if (anchor === null) continue;
        if (statSync(resolved).isDirectory() || !resolved.endsWith('.md')) {
          broken.push(`${target}: an anchor into a file that is not a Markdown page`);
          continue;
        }
        if (!headingAnchors(readFileSync(resolved, 'utf8')).has(anchor)) broken.push(`${target}: no heading with that anchor`);
      }
      assert.deepEqual(broken, [], `${page} has broken links`);
    });
  }
});
