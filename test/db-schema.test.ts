// src/db/schema.ts (the row types of the modules of src/db/) and the lists of
// states against the migrated database: a renamed, dropped or added column,
// or a state the database allows and the code does not know, fails here.
import assert from 'node:assert/strict';
import { sql } from '@databases/pg';
import { handlerByName, HTTP_HANDLER_COLUMNS, lockHttpHandler, setHttpHandlerColumns } from '../src/db/config.ts';
import { DELIVERY_STATES } from '../src/db/delivery-states.ts';
import { SCHEMA } from '../src/db/schema.ts';
import { ACCOUNT_STATUSES } from '../src/db/statuses.ts';
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

  it('a statement of src/db/ runs on the pool and returns its typed row', async () => {
    assert.deepEqual(await handlerByName(t.db, 'EventSender'), { name: 'EventSender', kind: 'http', enabled: false, instance: 'main' });
    assert.equal(await handlerByName(t.db, 'nope'), undefined);
  });

  /** The quoted values of a CHECK (col IN (...)) constraint. */
  async function checkValues(table: string, constraint: string): Promise<string[]> {
    const [r] = await t.db.query(sql`
      SELECT pg_get_constraintdef(c.oid) AS def FROM pg_constraint c
       WHERE c.conrelid = ${table}::regclass AND c.conname = ${constraint}`);
    assert.ok(r, `${constraint} exists`);
    return [...(r.def as string).matchAll(/'([^']*)'/g)].map((m) => m[1]!);
  }

  it('DELIVERY_STATES is the list event_deliveries_state_check allows', async () => {
    assert.deepEqual([...DELIVERY_STATES].sort(), (await checkValues('espf.event_deliveries', 'event_deliveries_state_check')).sort());
  });

  it('ACCOUNT_STATUSES is the list account_provisioning_statuses_status_check allows', async () => {
    assert.deepEqual([...ACCOUNT_STATUSES].sort(),
      (await checkValues('espf.account_provisioning_statuses', 'account_provisioning_statuses_status_check')).sort());
  });

  it('setHttpHandlerColumns sets only columns of espf.http_handlers, and refuses any other name before it runs', async () => {
    assert.ok(HTTP_HANDLER_COLUMNS.includes('url') && !HTTP_HANDLER_COLUMNS.includes('handler'));
    await assert.rejects(setHttpHandlerColumns(t.db, 'EventSender', { 'url = url; --': 1 }), { code: 'ESPF_USAGE' });
    await t.db.tx(async (tx) => {
      assert.equal((await lockHttpHandler(tx, 'EventSender'))?.token_rate, '10');
      assert.equal((await setHttpHandlerColumns(tx, 'EventSender', { token_rate: 7 }))?.token_rate, '7');
      assert.equal((await setHttpHandlerColumns(tx, 'EventSender', {}))?.token_rate, '7');
    });
    assert.equal(await lockHttpHandler(t.db, 'nope'), undefined);
    assert.equal(await setHttpHandlerColumns(t.db, 'nope', { token_rate: 7 }), undefined);
  });
});
