// Slot names are per server, not per database: two espf databases on one
// PostgreSQL server. A slot is ours only when it was made in our database,
// and every "does our slot exist" question (src/db/replication.ts slotState,
// which the catch-up of src/run/catch-up.ts and the stream ask) says so.
import assert from 'node:assert/strict';
import { sql } from '@databases/pg';
import { pino } from 'pino';
import { createSlot, slotLagBytes, slotState } from '../src/db/replication.ts';
import { catchUp } from '../src/run/catch-up.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';

describe('two databases on one server: a slot of the other database is not ours', function () {
  const slot = `espf_twodb_${process.pid}`;
  let a: TestDatabase;
  let b: TestDatabase;
  before(async () => {
    [a, b] = await Promise.all([createTestDatabase(), createTestDatabase()]);
    await createSlot(a.db, slot, false);
  });
  after(async () => {
    await Promise.all([a?.drop(), b?.drop()]); // drop() drops the slots of its database
  });

  it('slotState: present in the database that made it, absent in the other', async () => {
    const [where] = await b.db.query(sql`SELECT database FROM pg_replication_slots WHERE slot_name = ${slot}`);
    assert.equal(where.database, a.name, 'the slot is visible from both databases, and belongs to the first');
    assert.equal((await slotState(a.db, slot)).present, true);
    const other = await slotState(b.db, slot);
    assert.equal(other.present, false);
    assert.equal(other.failover, null);
  });

  it('slotLagBytes: a number in the database that made it, null in the other', async () => {
    assert.equal(typeof await slotLagBytes(a.db, slot), 'number');
    assert.equal(await slotLagBytes(b.db, slot), null);
  });

  it('the catch-up of the other database counts its slot as made now (and of the first as there)', async () => {
    const log = pino({ level: 'silent' });
    const run = (t: TestDatabase) => catchUp({ db: t.db, instance: 'main', shard: { k: 0, n: 1 }, slot, prepareSlot: async () => {}, log });
    assert.equal((await run(b)).slotCreated, true);
    assert.equal((await run(a)).slotCreated, false);
  });
});
