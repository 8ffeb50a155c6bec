// src/db/schema.ts (what Kysely builds statements against) against the
// migrated database: a renamed, dropped or added column fails here.
import assert from 'node:assert/strict';
import { sql } from '@databases/pg';
import { q, run } from '../src/db/query.ts';
import { SCHEMA } from '../src/db/schema.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';

describe('src/db/schema.ts matches the migrated espf schema', function () {
  let t: TestDatabase;
  let actual: Map<string, string[]>;
  before(async () => {
    t = await createTestDatabase();
    const rows: { table_name: string; column_name: string }[] = await t.db.query(sql`
      SELECT table_name, column_name FROM information_schema.columns
       WHERE table_schema = 'espf' ORDER BY table_name, ordinal_position`);
    actual = new Map();
    for (const r of rows) {
      const key = `espf.${r.table_name}`;
      if (!actual.has(key)) actual.set(key, []);
      actual.get(key)!.push(r.column_name);
    }
  });
  after(async () => { await t?.drop(); });

  it('has every table and view of the database, and no other', () => {
    assert.deepEqual(Object.keys(SCHEMA).sort(), [...actual.keys()].sort(), 'add new tables and views to src/db/schema.ts (and remove dropped ones)');
  });

  it('has every column of every table and view, and no other', () => {
    for (const [table, columns] of Object.entries(SCHEMA)) {
      assert.deepEqual(Object.keys(columns).sort(), [...(actual.get(table) ?? [])].sort(), `columns of ${table} in src/db/schema.ts`);
    }
  });

  it('a statement built with Kysely runs on the pool and returns typed rows', async () => {
    const rows = await run(t.db, q.selectFrom('espf.handlers').select(['name', 'kind']).where('kind', '=', 'http').where('name', 'in', ['EventSender', 'nope']));
    assert.deepEqual(rows, [{ name: 'EventSender', kind: 'http' }]);
  });
});
