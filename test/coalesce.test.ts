import assert from 'node:assert/strict';
import { sql } from '@databases/pg';
import { readStatus } from '../src/cli/status-command.ts';
import { Metrics } from '../src/metrics/metrics.ts';
import type { TestDatabase } from './support/database.ts';
import { deliveryFixture } from './support/fixture.ts';
import { eventually, type TestReceiver } from './support/receiver.ts';

/**
 * Coalescing (espf.event_types.coalesce, on for Customer/Status/Suspend): while
 * several events of such a type wait for the same handler and account (here:
 * behind a failing receiver), only the newest is sent; the older ones are
 * recorded as SUPERSEDED, counted in /metrics and espf status.
 */
describe('coalescing (espf.event_types.coalesce)', function () {
  this.timeout(60_000);
  const f = deliveryFixture({
    types: ['Customer/Status/Suspend', 'Customer/Blocked', 'Customer/Unblocked'],
    settings: { retry_max_delay: 2, retry_delay: 2 },   // one column per statement: the maximum first
    sender: false,   // started by the test that needs it, with its metrics
  });
  let t: TestDatabase;
  let rx: TestReceiver;
  let ids: { i_product: number; i_customer: number };
  before(() => { ({ t, rx, ids } = f); });

  it('ships on for Customer/Status/Suspend only', async () => {
    const rows = await t.db.query(sql`SELECT name FROM espf.event_types WHERE coalesce ORDER BY name`);
    assert.deepEqual(rows.map((r) => r.name), ['Customer/Status/Suspend']);
  });

  it('behind a failing receiver only the newest Suspend is sent; the older ones are SUPERSEDED; other types are not coalesced', async () => {
    const metrics = new Metrics();
    const s = await f.startSender({ metrics });
    let failing = true;
    rx.respond = () => (failing ? { status: 503 } : { status: 200 });
    try {
      const c = ids.i_customer;
      const suspend = () => t.db.query(sql`UPDATE billing.customer SET bill_status = 'suspended' WHERE i_customer = ${c}`);
      const open = () => t.db.query(sql`UPDATE billing.customer SET bill_status = 'open' WHERE i_customer = ${c}`);
      const block = (b: boolean) => t.db.query(sql`UPDATE billing.customer SET blocked = ${b} WHERE i_customer = ${c}`);
      await suspend();
      await rx.waitFor(() => rx.arrived.length >= 1, 15_000, 'the first Suspend to fail');
      await open(); await block(true); await suspend();
      await open(); await block(false); await suspend();
      const events = await t.db.query(sql`SELECT i_event, event_type FROM espf.events WHERE event_type IN ('Customer/Status/Suspend', 'Customer/Blocked', 'Customer/Unblocked') ORDER BY i_event`);
      const suspends = events.filter((e) => e.event_type === 'Customer/Status/Suspend').map((e) => Number(e.i_event));
      assert.equal(suspends.length, 3);
      await eventually(async () => (await t.db.query(sql`SELECT count(*)::int AS n FROM espf.event_deliveries WHERE state = 'SUPERSEDED'`))[0].n === 2,
        15_000, 'the two older Suspends superseded');
      failing = false;
      await rx.waitFor(() => rx.received.length >= 3, 15_000, 'the newest Suspend, the block and the unblock');
      await eventually(async () => (await t.db.query(sql`SELECT count(*)::int AS n FROM espf.event_deliveries WHERE state = 'DELIVERED'`))[0].n === 3);
      const got = rx.received.map((r) => [r.json.event_type, r.json.variables.i_event]);
      const id = (type: string) => Number(events.find((e) => e.event_type === type)!.i_event);
      assert.deepEqual(got, [['Customer/Blocked', id('Customer/Blocked')], ['Customer/Unblocked', id('Customer/Unblocked')], ['Customer/Status/Suspend', suspends[2]]],
        'the block and unblock (not coalescing) in order, then only the newest Suspend');
      const states = await t.db.query(sql`SELECT i_event, state FROM espf.event_deliveries WHERE event_type = 'Customer/Status/Suspend' ORDER BY i_event`);
      assert.deepEqual(states.map((r) => [Number(r.i_event), r.state]), [[suspends[0], 'SUPERSEDED'], [suspends[1], 'SUPERSEDED'], [suspends[2], 'DELIVERED']]);
      const text = await metrics.registry.metrics();
      assert.match(text, /espf_deliveries_total\{handler="EventSender",event_type="Customer\/Status\/Suspend",outcome="superseded"\} 2/);
      const status = await readStatus(t.db, { hours: 24, limit: 20 });
      assert.deepEqual(status.superseded_24h.map((r) => [r.handler, r.event_type, r.superseded]), [['EventSender', 'Customer/Status/Suspend', 2]]);
    } finally {
      await s.stop();
    }
  });
});
