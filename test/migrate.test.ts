import assert from 'node:assert/strict';
import { sql } from '@databases/pg';
import { migrate } from '../src/migrate/migrate.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';

describe('espf migrate', () => {
  let t: TestDatabase;
  before(async () => { t = await createTestDatabase(); });
  after(async () => { await t.drop(); });

  it('is safe to run again: applies nothing new, re-applies sql/', async () => {
    const r = await migrate(t.db);
    assert.deepEqual(r.applied, []);
    assert.ok(r.alreadyApplied >= 2);
    assert.ok(r.repeatable.length > 0);
  });

  it('creates the built-in handlers, types and the EventSender row', async () => {
    const handlers = await t.db.query(sql`SELECT name, kind, enabled FROM espf.handlers ORDER BY name`);
    assert.deepEqual(handlers.map((h) => h.name), ['CustomerToAccountsDispatcher', 'EventSender', 'ProductToAccountsDispatcher', 'ServiceAttributeDispatcher']);
    assert.ok(handlers.every((h) => h.enabled === false));
    const [row] = await t.db.query(sql`SELECT url FROM espf.http_handlers WHERE handler = 'EventSender'`);
    assert.deepEqual(row.url, []);
  });
});
