// One home per statement: every SQL statement the TypeScript side sends is
// written in a module of src/db/ (docs/architecture.md, "Database access").
// This lists every statement site under src/ outside src/db/ and fails when
// one appears.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

/**
 * Files that still hold statements of their own, each waiting to call the
 * src/db/ functions that already exist for them. Remove a file's line once it
 * has switched (this test fails while a listed file has no site left).
 */
const NOT_YET_SWITCHED: Readonly<Record<string, string>> = {};

/** The modules that send statements (a value imported from one is a way to build or run SQL). */
const DRIVERS = ['@databases/pg', '@databases/sql', 'kysely', 'pg', 'postgres'];

export interface Site { readonly file: string; readonly line: number; readonly text: string }

/**
 * The statement sites of one file: a tagged template or helper of a SQL
 * builder (sql`…`, sql.file, sql.__dangerous__rawValue, sql.ident, sql.join,
 * sql.value, sql<T>`…`), and every import of a value (not a type) from a
 * driver. Comments are not sites.
 */
export function statementSites(file: string, text: string): Site[] {
  const sites: Site[] = [];
  const lines = text.split('\n');
  let inBlockComment = false;
  lines.forEach((raw, i) => {
    let line = raw;
    if (inBlockComment) {
      const end = line.indexOf('*/');
      if (end < 0) return;
      line = line.slice(end + 2);
      inBlockComment = false;
    }
    line = line.replace(/\/\*.*?\*\//g, '');
    const open = line.indexOf('/*');
    if (open >= 0) { line = line.slice(0, open); inBlockComment = true; }
    line = line.replace(/(^|[^:'"`])\/\/.*$/, '$1');
    const builder = /(?<![\w.$])\w*[sS]ql(?:<[^>`]*>)?`|(?<![\w.$])\w*[sS]ql\.(?:file|__dangerous__\w+|ident|join|value)\s*\(/;
    const driverImport = new RegExp(`^\\s*import\\s+(?!type\\b)[^'"]*\\bfrom\\s+['"](?:${DRIVERS.map((d) => d.replace(/[/.]/g, '\\$&')).join('|')})['"]`);
    if (builder.test(line) || (driverImport.test(line) && !/^\s*import\s*\{\s*(?:type\s+\w+\s*,?\s*)+\}/.test(line))) {
      sites.push({ file, line: i + 1, text: raw.trim() });
    }
  });
  return sites;
}

async function tsFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...await tsFiles(p));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out.sort();
}

async function sitesOutsideDb(): Promise<Site[]> {
  const sites: Site[] = [];
  for (const f of await tsFiles(SRC)) {
    const rel = path.relative(SRC, f).split(path.sep).join('/');
    if (rel.startsWith('db/')) continue;
    sites.push(...statementSites(rel, await readFile(f, 'utf8')));
  }
  return sites;
}

const show = (sites: readonly Site[]) => sites.map((s) => `  src/${s.file}:${s.line}: ${s.text}`).join('\n');

describe('one home per statement: SQL is written in src/db/ only', () => {
  it('finds what it must (the scanner itself)', () => {
    const found = (text: string) => statementSites('x.ts', text).length;
    assert.equal(found("import { sql } from '@databases/pg';"), 1);
    assert.equal(found("import pgModule, { sql } from '@databases/pg';"), 1);
    assert.equal(found("import { sql } from 'kysely';"), 1);
    assert.equal(found("import type { Queryable } from '@databases/pg';"), 0);
    assert.equal(found("import { type Queryable } from '@databases/pg';"), 0);
    assert.equal(found('await db.query(sql`SELECT 1`);'), 1);
    assert.equal(found('const q = pgSql`SELECT 1`;'), 1);
    assert.equal(found('.select(sql<number>`count(*)`)'), 1);
    assert.equal(found('await tx.query(sql.__dangerous__rawValue(text));'), 1);
    assert.equal(found('await conn.query(sql.file(f));'), 1);
    assert.equal(found('// an example: sql`SELECT 1`'), 0);
    assert.equal(found('/* sql`SELECT 1` */ const x = 1;'), 0);
    assert.equal(found('/**\n * sql`SELECT 1`\n */'), 0);
    assert.equal(found("const help = 'SELECT * FROM espf.matrix';"), 0); // text shown to a user, not sent
    assert.equal(found("import { connect } from '../db/connect.ts';"), 0);
    assert.equal(found('throw new Error(`${name}: name must be NNNN_name.sql`);'), 0); // a file name
  });

  it('no file outside src/db/ holds a statement (but those listed as not yet switched)', async () => {
    const sites = await sitesOutsideDb();
    const stray = sites.filter((s) => !(s.file in NOT_YET_SWITCHED));
    assert.equal(stray.length, 0,
      `SQL outside src/db/: move each statement into the module of its table family under src/db/ and call it from there\n${show(stray)}`);
  });

  it('every file listed as not yet switched still has a site (remove its line once it has switched)', async () => {
    const files = new Set((await sitesOutsideDb()).map((s) => s.file));
    const done = Object.keys(NOT_YET_SWITCHED).filter((f) => !files.has(f));
    assert.deepEqual(done, [], `remove from NOT_YET_SWITCHED in test/unit/statement-sites.test.ts: ${done.join(', ')}`);
  });
});
