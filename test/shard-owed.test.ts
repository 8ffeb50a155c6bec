// A shard process stopped between making its slot and its catch-up: the slot
// exists at its next start, yet it carried nothing of what committed while
// there was none. Like the whole instance (espf.handler_coverage), the shard
// keeps an "owed" mark from before the slot is made until its catch-up
// commits (espf.shard_progress.owed_from, espf.slot_missing,
// sql/450_catch_up.sql), and its next start catches up from it.
import assert from 'node:assert/strict';
import { sql } from '@databases/pg';
import { pino } from 'pino';
import { createSlot } from '../src/db/replication.ts';
import { catchUp } from '../src/run/catch-up.ts';
import { deliveryFixture } from './support/fixture.ts';
import { addAccounts, startSender } from './support/sender.ts';

describe('a shard stopped between making its slot and its catch-up', function () {
  this.timeout(60_000);
  const f = deliveryFixture({
    types: ['Account/New'],
    sender: false,
    setup: async (f) => { await f.t.db.query(sql`UPDATE espf.handlers SET shards = 2 WHERE instance = 'main'`); },
  });
  const shard = { k: 1, n: 2 };
  const ofShard = async (prefix: string): Promise<number[]> => (await f.t.db.query(sql`
    SELECT e.i_event FROM espf.events e
     WHERE e.event_type = 'Account/New' AND espf.in_shard(e, ${shard.k}, ${shard.n}) AND e.variables ->> 'id' LIKE ${`${prefix}%`}
     ORDER BY 1`)).map((r: { i_event: string }) => Number(r.i_event));
  const owed = async (): Promise<Date | null> => (await f.t.db.query(sql`
    SELECT owed_from FROM espf.shard_progress WHERE instance = 'main' AND shard = ${shard.k} AND shards = ${shard.n}`))[0]?.owed_from ?? null;

  it('owes the catch-up at its next start: the events committed while it had no slot are delivered', async () => {
    const { t, rx } = f;
    let run = await startSender(t.db, t.url, 'main', { shard });
    const slot = run.sender.slot;
    await addAccounts(t.db, f.ids, 20, 'first-');
    const first = await ofShard('first-');
    await rx.waitFor(() => rx.received.length >= first.length, 20_000, `shard 1's ${first.length} events`);
    await run.stop();

    // The slot goes (a failover without failover slots); events commit while there is none.
    await t.db.query(sql`SELECT pg_drop_replication_slot(${slot})`);
    await addAccounts(t.db, f.ids, 30, 'gap-');
    const gap = await ofShard('gap-');
    assert.ok(gap.length > 0, 'shard 1 has events in the gap');

    // The next start makes the slot, and the process stops before its catch-up.
    const log = pino({ level: 'silent' });
    await assert.rejects(catchUp({
      db: t.db, instance: 'main', shard, slot, log,
      prepareSlot: async () => { await createSlot(t.db, slot, false); throw new Error('stopped before the catch-up'); },
    }), /stopped before the catch-up/);
    assert.ok(await owed() !== null, 'the shard owes a catch-up (espf.shard_progress.owed_from)');

    // The start after: the slot is there, the mark says what it did not carry.
    run = await startSender(t.db, t.url, 'main', { shard });
    try {
      const got = () => new Set(rx.received.map((r) => Number(r.json.variables.i_event)));
      await rx.waitFor(() => { const g = got(); return gap.every((i) => g.has(i)); }, 20_000, `the ${gap.length} events of the gap`);
      assert.equal(await owed(), null, 'paid: the mark is gone once the catch-up committed');
      const all = [...first, ...gap];
      assert.deepEqual([...got()].sort((a, b) => a - b), all, 'shard 1\'s events, no other shard\'s');
    } finally {
      await run.stop();
    }
  });
});
