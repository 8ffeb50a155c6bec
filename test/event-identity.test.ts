// After an asynchronous failover the new primary may hand out a lost event's
// i_event again. An outcome espf held in memory for the lost event must not be
// recorded on the new one: the record stage checks the event's identity
// (i_event, type and created_at) before writing (sql/400_results.sql), drops a
// mismatched outcome and logs it. Simulated here on one server: while the
// receiver holds the request, the event is replaced by another of the same
// number, as the new primary would have it.
import assert from 'node:assert/strict';
import { sql } from '@databases/pg';
import { deliveryFixture } from './support/fixture.ts';
import { eventually } from './support/receiver.ts';
import { addAccounts, startSender } from './support/sender.ts';

describe('the record stage checks the event\'s identity, not only its number', function () {
  this.timeout(60_000);
  const f = deliveryFixture({ types: ['Account/New'] });

  it('an outcome of an event whose i_event now names another event is dropped, counted and logged; others are recorded', async () => {
    const { t, rx, run } = f;
    let held: number | undefined;
    rx.respond = (r) => {
      if (String(r.json.variables.id) !== 'lost-1') return { status: 200 };
      held = Number(r.json.variables.i_event);
      return { status: 200, delayMs: 1500 };
    };
    await addAccounts(t.db, f.ids, 1, 'lost-');
    await eventually(async () => held !== undefined, 15_000, 'the request of the event to be lost');
    // The new primary's view: the event (and anything recorded for it) is gone, and its number names a new event.
    await t.db.tx(async (tx) => {
      await tx.query(sql`DELETE FROM espf.event_deliveries WHERE i_event = ${held}`);
      await tx.query(sql`DELETE FROM espf.account_provisioning_statuses WHERE i_event = ${held}`);
      await tx.query(sql`DELETE FROM espf.events WHERE i_event = ${held}`);
      await tx.query(sql`INSERT INTO espf.events (i_event, event_type, variables, created_at)
                         VALUES (${held}, 'Account/Blocked', '{"id": "new-on-the-new-primary"}', now() - interval '1 second')`);
    });
    const writer = run.sender.resultsWriter;
    await eventually(async () => writer.dropped >= 1, 15_000, 'the stale outcome dropped');
    assert.equal(writer.dropped, 1);
    // (EventSender is not subscribed to the new event's type: any row for it would be the old outcome's.)
    await run.sender.resultsWriter.committed();
    const rows = await t.db.query(sql`SELECT state FROM espf.event_deliveries WHERE i_event = ${held} AND handler = 'EventSender'`);
    assert.deepEqual(rows, [], 'no row on the new event of that number from the old outcome');

    // The check does not drop what is right: the next events are recorded as usual.
    await addAccounts(t.db, f.ids, 5, 'fine-');
    await eventually(async () => {
      const [r] = await t.db.query(sql`
        SELECT count(*)::int AS n FROM espf.event_deliveries d JOIN espf.events e USING (i_event)
         WHERE e.variables ->> 'id' LIKE 'fine-%' AND d.state = 'DELIVERED'`);
      return r.n === 5;
    }, 15_000, 'the 5 later events DELIVERED');
    assert.equal(writer.dropped, 1);
  });
});

describe('the identity check of a delivery read back from its row', function () {
  this.timeout(60_000);
  const f = deliveryFixture({ types: ['Account/New'], sender: false });

  it('an outcome of a waiting delivery whose event was replaced is dropped too (its row says when it committed)', async () => {
    const { t, rx } = f;
    let held: number | undefined;
    rx.respond = (r) => {
      const id = String(r.json.variables.id);
      // The new event of the same number and type is answered well after the old one.
      if (id === 'new-on-the-new-primary') return { status: 200, delayMs: 5000 };
      if (id !== 'waiting-1') return { status: 200 };
      held = Number(r.json.variables.i_event);
      return { status: 200, delayMs: 1500 };
    };
    // Committed before the instance first streams: caught up as a PENDING row, read back from it.
    await addAccounts(t.db, f.ids, 1, 'waiting-');
    const run = await startSender(t.db, t.url);
    try {
      await eventually(async () => held !== undefined, 15_000, 'the request of the waiting delivery');
      const [row] = await t.db.query(sql`SELECT state FROM espf.event_deliveries WHERE i_event = ${held} AND handler = 'EventSender'`);
      assert.equal(row?.state, 'PENDING', 'it was read back from its row');
      await t.db.tx(async (tx) => {
        await tx.query(sql`DELETE FROM espf.event_deliveries WHERE i_event = ${held}`);
        await tx.query(sql`DELETE FROM espf.events WHERE i_event = ${held}`);
        // Same number, same type: only the time tells them apart (created after the old one's commit).
        await tx.query(sql`INSERT INTO espf.events (i_event, event_type, variables) VALUES (${held}, 'Account/New', '{"id": "new-on-the-new-primary"}')`);
      });
      const writer = run.sender.resultsWriter;
      await eventually(async () => writer.dropped >= 1, 15_000, 'the stale outcome dropped');
      await writer.committed();
      const rows = await t.db.query(sql`SELECT state FROM espf.event_deliveries WHERE i_event = ${held} AND handler = 'EventSender'`);
      assert.deepEqual(rows, [], 'no row for the new event from the old outcome (its own answer comes later)');
      // The new event is delivered on its own.
      await rx.waitFor(() => rx.received.some((r) => r.json.variables.id === 'new-on-the-new-primary'), 15_000, 'the new event');
      await eventually(async () => (await t.db.query(sql`
        SELECT 1 FROM espf.event_deliveries WHERE i_event = ${held} AND handler = 'EventSender' AND state = 'DELIVERED'`)).length === 1, 10_000, 'its DELIVERED row');
    } finally {
      await run.stop();
    }
  });
});
