// The slot of a running `espf run` disappears while it is disconnected (a DBA
// drops it; the same path serves a failover without failover slots, see
// test/failover.test.ts): espf must not make a fresh slot in silence. It makes
// it, catches up from the outbox what the old slot had not streamed and what
// committed while there was none, and only then streams; every event is
// delivered, an account's events arrive in commit order, and it counts it.
import assert from 'node:assert/strict';
import { sql } from '@databases/pg';
import type { Db } from '../src/db/connect.ts';
import { sqlState } from '../src/errors.ts';
import { Metrics } from '../src/metrics/metrics.ts';
import { deliveryFixture } from './support/fixture.ts';
import { eventually } from './support/receiver.ts';
import { startSender } from './support/sender.ts';
import { AccountWriter, assertAccountOrder } from './support/writer.ts';

/**
 * As a DBA would: ends the walsender of the slot, commits `between` while
 * nothing streams the slot, drops it, and commits `after` before espf has made
 * it again. Tries again if espf reconnected first (the slot is active).
 */
async function dropSlotUnderSender(db: Db, slot: string, between: () => Promise<void>, after: () => Promise<void>): Promise<void> {
  await eventually(async () => {
    await db.query(sql`SELECT pg_terminate_backend(active_pid, 5000) FROM pg_replication_slots WHERE slot_name = ${slot} AND active_pid IS NOT NULL`);
    await between();
    try {
      await db.query(sql`SELECT pg_drop_replication_slot(${slot})`);
    } catch (err) {
      if (sqlState(err) === '55006') return false; // active again: espf reconnected first
      throw err;
    }
    await after();
    return true;
  }, 20_000, `slot ${slot} dropped while espf run is disconnected`);
}

describe('a slot dropped while espf run is disconnected', function () {
  this.timeout(60_000);
  const f = deliveryFixture({
    types: ['Account/New', 'Account/ID/Changed'],
    metrics: () => new Metrics({ processMetrics: false }),
  });

  it('is made anew after a catch-up: every event delivered, in per-account order, counted in /metrics', async () => {
    const { t, rx } = f;
    const writer = new AccountWriter(t.db, f.ids, 'sl');
    writer.start();
    await rx.waitFor(() => rx.received.length >= 60, 20_000, '60 deliveries before the slot is dropped');

    // Committed while no walsender streams the old slot, and while there is no slot at all.
    const [{ n: before }] = await t.db.query(sql`SELECT count(*)::int AS n FROM espf.events`);
    await dropSlotUnderSender(t.db, 'espf_main', () => writer.burst('between'), () => writer.burst('after'));
    await rx.waitFor(() => rx.received.length >= 60 + 60, 20_000, 'deliveries after the slot was made anew');
    await writer.stop();

    const events: { i_event: number }[] = await t.db.query(sql`
      SELECT i_event FROM espf.events WHERE event_type IN ('Account/New', 'Account/ID/Changed')`);
    assert.ok(events.length > before);
    const want = new Set(events.map((e) => Number(e.i_event)));
    const got = () => new Set(rx.received.map((r) => Number(r.json.variables.i_event)));
    await rx.waitFor(() => { const g = got(); return [...want].every((i) => g.has(i)); }, 30_000, `all ${want.size} events at the receiver`)
      .catch((err: Error) => { throw new Error(`${err.message}; missing ${[...want].filter((i) => !got().has(i)).slice(0, 20).join(', ')}`); });
    await eventually(async () => {
      const [r] = await t.db.query(sql`
        SELECT count(*)::int AS n FROM espf.events e
         WHERE event_type IN ('Account/New', 'Account/ID/Changed')
           AND NOT EXISTS (SELECT FROM espf.event_deliveries d WHERE d.i_event = e.i_event AND d.handler = 'EventSender' AND d.state = 'DELIVERED')`);
      return r.n === 0;
    }, 20_000, 'every event DELIVERED in espf.event_deliveries');
    assertAccountOrder(rx.received);

    const text = await f.metrics!.text();
    assert.match(text, /espf_slot_recreated_total\{slot="espf_main"\} 1\b/);
    const caught = /espf_caught_up_events_total\{handler="EventSender"\} (\d+)/.exec(text);
    assert.ok(caught && Number(caught[1]) >= writer.burstEvents, `the catch-up counted the ${writer.burstEvents} events committed while nothing streamed: ${caught?.[0]}`);
    const [slot] = await t.db.query(sql`SELECT active FROM pg_replication_slots WHERE slot_name = 'espf_main'`);
    assert.ok(slot, 'the slot exists again');
    process.stderr.write(`# slot dropped: ${want.size} events, ${rx.received.length - got().size} sent twice, ${caught![1]} caught up\n`);
  });
});

describe('a shard\'s slot dropped while its process is disconnected', function () {
  this.timeout(60_000);
  const f = deliveryFixture({
    types: ['Account/New', 'Account/ID/Changed'],
    sender: false,
    setup: async (f) => { await f.t.db.query(sql`UPDATE espf.handlers SET shards = 2 WHERE instance = 'main'`); },
  });

  it('is made anew after a catch-up of that shard\'s events only: every event once, per-account order', async () => {
    const { t, rx } = f;
    const metrics = [new Metrics({ processMetrics: false }), new Metrics({ processMetrics: false })];
    const shards = [
      await startSender(t.db, t.url, 'main', { shard: { k: 0, n: 2 }, metrics: metrics[0] }),
      await startSender(t.db, t.url, 'main', { shard: { k: 1, n: 2 }, metrics: metrics[1] }),
    ];
    try {
      const writer = new AccountWriter(t.db, f.ids, 'ss');
      writer.start();
      await rx.waitFor(() => rx.received.length >= 60, 20_000, '60 deliveries before the slot is dropped');
      await dropSlotUnderSender(t.db, 'espf_main_1of2', () => writer.burst('between'), () => writer.burst('after'));
      await rx.waitFor(() => rx.received.length >= 120, 20_000, 'deliveries after the slot was made anew');
      await writer.stop();

      const events: { i_event: number }[] = await t.db.query(sql`
        SELECT i_event FROM espf.events WHERE event_type IN ('Account/New', 'Account/ID/Changed')`);
      const want = new Set(events.map((e) => Number(e.i_event)));
      const got = () => new Set(rx.received.map((r) => Number(r.json.variables.i_event)));
      await rx.waitFor(() => { const g = got(); return [...want].every((i) => g.has(i)); }, 30_000, `all ${want.size} events at the receiver`)
        .catch((err: Error) => { throw new Error(`${err.message}; missing ${[...want].filter((i) => !got().has(i)).slice(0, 20).join(', ')}`); });
      assert.equal(rx.received.length, got().size, 'no event sent twice (by two shards, or by the catch-up and the stream)');
      assertAccountOrder(rx.received);
      assert.match(await metrics[1]!.text(), /espf_slot_recreated_total\{slot="espf_main_1of2"\} 1\b/);
      assert.match(await metrics[0]!.text(), /espf_slot_recreated_total\{slot="espf_main_0of2"\} 0\b/);
      const caught = /espf_caught_up_events_total\{handler="EventSender"\} (\d+)/.exec(await metrics[1]!.text());
      assert.ok(caught && Number(caught[1]) > 0, `shard 1 caught up its events: ${caught?.[0]}`);
      process.stderr.write(`# shard slot dropped: ${want.size} events, ${caught![1]} caught up by shard 1\n`);
    } finally {
      for (const s of shards) await s.stop();
    }
  });

  it('is not made anew when the instance\'s number of shards has changed since (a slot retired by a switch)', async () => {
    const { t } = f;
    const metrics = new Metrics({ processMetrics: false });
    const s1 = await startSender(t.db, t.url, 'main', { shard: { k: 1, n: 2 }, metrics });
    try {
      await t.db.query(sql`UPDATE espf.handlers SET shards = 3 WHERE instance = 'main'`);
      await dropSlotUnderSender(t.db, 'espf_main_1of2', async () => undefined, async () => undefined);
      // Absence cannot be awaited: give the stream a few reconnect attempts (250, 500, 1000 ms).
      await new Promise((r) => setTimeout(r, 2500));
      const slots = await t.db.query(sql`SELECT 1 FROM pg_replication_slots WHERE slot_name = 'espf_main_1of2'`);
      assert.equal(slots.length, 0, 'the retired slot was not made again');
      assert.equal(s1.sender.isStreaming, false);
      assert.match(await metrics.text(), /espf_slot_recreated_total\{slot="espf_main_1of2"\} 0\b/);
    } finally {
      await s1.stop();
      await t.db.query(sql`UPDATE espf.handlers SET shards = 2 WHERE instance = 'main'`);
    }
  });
});
