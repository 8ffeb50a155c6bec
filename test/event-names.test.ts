import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { sql } from '@databases/pg';
import type { TestDatabase } from './support/database.ts';
import { deliveryFixture, type SenderRun } from './support/fixture.ts';
import { eventually, type TestReceiver } from './support/receiver.ts';
import { seedCustomer } from './support/sender.ts';

// espf.http_handlers.event_names: the body carries the receiver's name for a
// type; the rows, statuses and provisioning.log keep espf's name.
describe('espf.http_handlers.event_names on the wire', function () {
  const f = deliveryFixture({
    types: ['Account/New', 'Account/ID/Changed'],
    seed: false,
    prepare: async ({ rx }) => {
      // A receiver that knows only its own spelling, as a PHP library for the commercial EventSender does.
      rx.respond = (r) => (r.json.event_type === 'Account/ID/Changed' ? { status: 404, body: '{"error":"Unknown event"}' } : { status: 200 });
    },
    setup: async ({ t }) => {
      await t.db.query(sql`UPDATE espf.http_handlers SET event_names = '{"Account/ID/Changed": "Account/Id/Changed"}' WHERE handler = 'EventSender'`);
    },
  });
  let t: TestDatabase;
  let rx: TestReceiver;
  let run: SenderRun;
  before(() => { ({ t, rx, run } = f); });

  it('sends the mapped name, and espf\'s name for types not in the map', async () => {
    const ids = await seedCustomer(t.db);
    const [a] = await t.db.query(sql`INSERT INTO billing.account (id, i_customer, i_product) VALUES ('+15550700', ${ids.i_customer}, ${ids.i_product}) RETURNING i_account`);
    await t.db.query(sql`UPDATE billing.account SET id = '+15550701' WHERE i_account = ${a.i_account}`);
    await rx.waitFor(() => rx.received.length >= 2, 15_000, 'both events');
    assert.deepEqual(rx.arrived.map((r) => r.json.event_type), ['Account/New', 'Account/Id/Changed']);
    const changed = rx.received[1]!;
    assert.equal(changed.json.variables.prev_id, '+15550700');
    assert.equal(changed.json.variables.id, '+15550701');

    // Rows, statuses and the log keep espf's own name.
    const rows = await eventually(async () => {
      const r = await t.db.query(sql`SELECT event_type, state FROM espf.event_deliveries WHERE handler = 'EventSender' ORDER BY i_event`);
      return r.length === 2 && r.every((x) => x.state === 'DELIVERED') ? r : undefined;
    }, 10_000, 'two DELIVERED rows');
    assert.deepEqual(rows.map((r) => r.event_type), ['Account/New', 'Account/ID/Changed']);
    const [ev] = await t.db.query(sql`SELECT event_type FROM espf.events WHERE variables->>'prev_id' = '+15550700'`);
    assert.equal(ev.event_type, 'Account/ID/Changed');
    const status = await eventually(async () => {
      const [s] = await t.db.query(sql`SELECT * FROM espf.account_provisioning_statuses WHERE i_account = ${a.i_account} AND handler = 'EventSender' AND event_type = 'Account/ID/Changed'`);
      return s;
    }, 10_000, 'the account status');
    assert.equal(status.status, 'OK');
    await run.stop();
    const lines = readFileSync(path.join(run.logDir, 'provisioning.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.ok(lines.some((l) => l.event_type === 'Account/ID/Changed' && l.status === 200), 'provisioning.log names espf\'s type');
    assert.ok(!lines.some((l) => l.event_type === 'Account/Id/Changed'));
  });
});
