import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import pino from 'pino';
import { sql } from '@databases/pg';
import { connect, type Db } from '../src/db/connect.ts';
import { runMaintenancePass, startMaintenance, type MaintenanceReport } from '../src/maintenance/maintenance.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { EspfProcess } from './support/child.ts';
import { eventually } from './support/receiver.ts';

/** A real pino logger writing JSON lines into an array. */
function capturingLogger(): { log: pino.Logger; lines: Record<string, unknown>[]; text: () => string } {
  const raw: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) { raw.push(...chunk.toString('utf8').split('\n').filter(Boolean)); cb(); },
  });
  const log = pino({ level: 'debug' }, stream);
  return {
    log,
    get lines() { return raw.map((l) => JSON.parse(l) as Record<string, unknown>); },
    text: () => raw.join('\n'),
  };
}

/** Opens every maintenance gate, as if the last pass ran long ago. */
async function openGates(db: Db, tasks = ['purge', 'reclaim', 'slot_lag', 'digest']): Promise<void> {
  await db.query(sql`UPDATE espf.maintenance_runs SET last_run_at = '-infinity' WHERE task = ANY(${tasks}::text[])`);
}

/** An event created `age` ago, and one delivery row per given state (finished `finishedAgo` ago when finished). */
async function seedEvent(db: Db, age: string, deliveries: { state: string; finishedAgo?: string; handler?: string; instance?: string }[] = []): Promise<number> {
  const [e] = await db.query(sql`
    INSERT INTO espf.events (event_type, variables, created_at)
    VALUES ('Account/Blocked', jsonb_build_object('i_account', 1), now() - ${age}::interval) RETURNING i_event`);
  let n = 0;
  for (const d of deliveries) {
    const finished = ['DELIVERED', 'FAILED', 'DISPATCHED'].includes(d.state);
    await db.query(sql`
      INSERT INTO espf.event_deliveries (i_event, handler, state, event_type, order_key, i_account, instance, attempts,
                                         created_at, first_attempt_at, last_attempt_at, finished_at)
      VALUES (${e.i_event}, ${d.handler ?? `H${n++}`}, ${d.state}, 'Account/Blocked', 'a:1', 1, ${d.instance ?? 'main'}, 1,
              now() - ${age}::interval, now() - ${age}::interval, now() - ${age}::interval,
              CASE WHEN ${finished} THEN now() - ${d.finishedAgo ?? age}::interval END)`);
  }
  return e.i_event;
}

async function exists(db: Db, i_event: number): Promise<{ event: boolean; deliveries: number }> {
  const [r] = await db.query(sql`
    SELECT EXISTS (SELECT 1 FROM espf.events WHERE i_event = ${i_event}) AS event,
           (SELECT count(*)::int FROM espf.event_deliveries WHERE i_event = ${i_event}) AS deliveries`);
  return r;
}

describe('maintenance', function () {
  let t: TestDatabase;
  const quiet = pino({ level: 'silent' });

  before(async () => {
    t = await createTestDatabase();
  });
  after(async () => {
    await t?.drop();
  });

  describe('purge', () => {
    beforeEach(async () => {
      await t.db.query(sql`DELETE FROM espf.event_deliveries`);
      await t.db.query(sql`DELETE FROM espf.events`);
      await t.db.query(sql`UPDATE espf.maintenance SET purge_batch = 5, retention = '7 days'`);
    });

    it('removes finished deliveries and events past the retention in batches; keeps waiting and recent ones', async () => {
      const oldDelivered: number[] = [];
      for (let i = 0; i < 12; i++) oldDelivered.push(await seedEvent(t.db, '10 days', [{ state: 'DELIVERED', finishedAgo: '9 days' }]));
      const oldFailed = await seedEvent(t.db, '10 days', [{ state: 'FAILED', finishedAgo: '8 days' }]);
      const oldDispatched = await seedEvent(t.db, '10 days', [{ state: 'DISPATCHED' }]);
      const oldUnsubscribed = [await seedEvent(t.db, '8 days'), await seedEvent(t.db, '8 days'), await seedEvent(t.db, '8 days')];
      const oldRetry = await seedEvent(t.db, '10 days', [{ state: 'RETRY' }]);
      const oldPending = await seedEvent(t.db, '10 days', [{ state: 'PENDING' }]);
      const recentlyFinished = await seedEvent(t.db, '10 days', [{ state: 'DELIVERED', finishedAgo: '9 days' }, { state: 'FAILED', finishedAgo: '1 day' }]);
      const recent = await seedEvent(t.db, '1 hour', [{ state: 'DELIVERED', finishedAgo: '1 hour' }]);
      const recentUnsubscribed = await seedEvent(t.db, '6 days');

      await openGates(t.db);
      const report = await runMaintenancePass({ db: t.db, log: quiet, instance: 'main' });
      assert.deepEqual(report.errors, []);
      assert.ok(report.purge, 'the purge ran');
      // 12 delivered + failed + dispatched + the old one of recentlyFinished
      assert.equal(report.purge.deliveries, 15);
      // 12 delivered + failed + dispatched + 3 without deliveries
      assert.equal(report.purge.events, 17);
      // batches of 5: deliveries 5+5+5+0, events 5+5+5+2, notices 0
      assert.equal(report.purge.batches, 4 + 4 + 1);
      assert.equal(report.purge.complete, true);

      for (const i of [...oldDelivered, oldFailed, oldDispatched, ...oldUnsubscribed]) {
        assert.deepEqual(await exists(t.db, i), { event: false, deliveries: 0 }, `event ${i} purged`);
      }
      assert.deepEqual(await exists(t.db, oldRetry), { event: true, deliveries: 1 }, 'a retrying delivery and its event stay');
      assert.deepEqual(await exists(t.db, oldPending), { event: true, deliveries: 1 }, 'a pending delivery and its event stay');
      assert.deepEqual(await exists(t.db, recentlyFinished), { event: true, deliveries: 1 }, 'an event stays while one of its deliveries is recent');
      assert.deepEqual(await exists(t.db, recent), { event: true, deliveries: 1 });
      assert.deepEqual(await exists(t.db, recentUnsubscribed), { event: true, deliveries: 0 });

      const [run] = await t.db.query(sql`SELECT last_instance, last_result FROM espf.maintenance_runs WHERE task = 'purge'`);
      assert.equal(run.last_instance, 'main');
      assert.equal(run.last_result.deliveries, 15);
    });

    it('the retention comes from espf.maintenance', async () => {
      const i = await seedEvent(t.db, '3 hours', [{ state: 'DELIVERED', finishedAgo: '2 hours' }]);
      await openGates(t.db);
      let report = await runMaintenancePass({ db: t.db, log: quiet, instance: 'main' });
      assert.equal(report.purge?.deliveries, 0);
      assert.deepEqual(await exists(t.db, i), { event: true, deliveries: 1 });
      await t.db.query(sql`UPDATE espf.maintenance SET retention = '1 hour'`);
      await openGates(t.db);
      report = await runMaintenancePass({ db: t.db, log: quiet, instance: 'main' });
      assert.equal(report.purge?.deliveries, 1);
      assert.deepEqual(await exists(t.db, i), { event: false, deliveries: 0 });
    });

    it('skips rows another transaction holds instead of waiting for them', async () => {
      const held = await seedEvent(t.db, '10 days', [{ state: 'DELIVERED', finishedAgo: '9 days' }]);
      const free = await seedEvent(t.db, '10 days', [{ state: 'DELIVERED', finishedAgo: '9 days' }]);
      const other = connect({ connectionString: t.url, poolSize: 1 });
      let release!: () => void;
      const released = new Promise<void>((r) => { release = r; });
      let locked!: () => void;
      const isLocked = new Promise<void>((r) => { locked = r; });
      const holder = other.tx(async (tx) => {
        await tx.query(sql`SELECT 1 FROM espf.event_deliveries WHERE i_event = ${held} FOR UPDATE`);
        locked();
        await released;
      });
      try {
        await isLocked;
        await openGates(t.db);
        const report = await runMaintenancePass({ db: t.db, log: quiet, instance: 'main' });
        assert.equal(report.purge?.deliveries, 1, 'only the free row');
        assert.equal((await exists(t.db, held)).deliveries, 1, 'the held row is still there');
        assert.deepEqual(await exists(t.db, free), { event: false, deliveries: 0 });
      } finally {
        release();
        await holder;
        await other.dispose();
      }
      await openGates(t.db);
      const next = await runMaintenancePass({ db: t.db, log: quiet, instance: 'main' });
      assert.equal(next.purge?.deliveries, 1, 'the next pass takes it');
      assert.equal((await exists(t.db, held)).deliveries, 0);
    });
  });

  describe('the fleet-wide gate', () => {
    it('lets only one of several concurrent passes run each task', async () => {
      const second = connect({ connectionString: t.url, poolSize: 3 });
      try {
        await openGates(t.db);
        const passes = ['a', 'b', 'c', 'd', 'e', 'f'].map((instance, i) =>
          runMaintenancePass({ db: i % 2 ? second : t.db, log: quiet, instance }));
        const reports: MaintenanceReport[] = await Promise.all(passes);
        for (const r of reports) assert.deepEqual(r.errors, []);
        for (const task of ['purge', 'reclaim', 'slot_lag'] as const) {
          const ran = reports.filter((r) => r[task] !== undefined);
          assert.equal(ran.length, 1, `exactly one pass ran ${task}`);
        }
        const runs = await t.db.query(sql`SELECT task, last_instance FROM espf.maintenance_runs WHERE task <> 'digest'`);
        for (const r of runs) assert.ok(['a', 'b', 'c', 'd', 'e', 'f'].includes(r.last_instance), `${r.task} ran by ${r.last_instance}`);
      } finally {
        await second.dispose();
      }
    });

    it('runs a task again only after espf.maintenance.pass_interval', async () => {
      await openGates(t.db);
      const first = await runMaintenancePass({ db: t.db, log: quiet, instance: 'main' });
      assert.ok(first.purge && first.reclaim && first.slot_lag);
      const soon = await runMaintenancePass({ db: t.db, log: quiet, instance: 'main' });
      assert.equal(soon.purge, undefined, 'not again within pass_interval (1 minute)');
      assert.equal(soon.slot_lag, undefined);
      // The last pass as if it ran 2 minutes ago: due again with the default interval ...
      await t.db.query(sql`UPDATE espf.maintenance_runs SET last_run_at = now() - interval '2 minutes'`);
      await t.db.query(sql`UPDATE espf.maintenance SET pass_interval = '5 minutes'`);
      // ... but not with a 5 minute interval.
      const longer = await runMaintenancePass({ db: t.db, log: quiet, instance: 'main' });
      assert.equal(longer.purge, undefined);
      await t.db.query(sql`UPDATE espf.maintenance SET pass_interval = '1 minute'`);
      const due = await runMaintenancePass({ db: t.db, log: quiet, instance: 'main' });
      assert.ok(due.purge && due.reclaim && due.slot_lag);
    });
  });

  describe('reclaim', () => {
    beforeEach(async () => {
      await t.db.query(sql`DELETE FROM espf.event_deliveries`);
      await t.db.query(sql`DELETE FROM espf.events`);
    });
    after(async () => {
      await t.db.query(sql`UPDATE espf.handlers SET instance = 'main' WHERE name = 'EventSender'`);
    });

    it('gives waiting deliveries of a handler to the instance that serves it now', async () => {
      const pending = await seedEvent(t.db, '1 hour', [{ state: 'PENDING', handler: 'EventSender', instance: 'dead' }]);
      const retry = await seedEvent(t.db, '1 hour', [{ state: 'RETRY', handler: 'EventSender', instance: 'dead' }]);
      const delivered = await seedEvent(t.db, '1 hour', [{ state: 'DELIVERED', handler: 'EventSender', instance: 'dead' }]);
      const mine = await seedEvent(t.db, '1 hour', [{ state: 'PENDING', handler: 'EventSender', instance: 'main' }]);
      const instanceOf = async (i: number) => (await t.db.query(sql`SELECT instance FROM espf.event_deliveries WHERE i_event = ${i}`))[0].instance;

      const cap = capturingLogger();
      await openGates(t.db);
      const report = await runMaintenancePass({ db: t.db, log: cap.log, instance: 'main' });
      assert.deepEqual(report.errors, []);
      assert.deepEqual(report.reclaim, { moved: [{ handler: 'EventSender', from_instance: 'dead', to_instance: 'main', deliveries: 2 }], total: 2 });
      assert.equal(await instanceOf(pending), 'main');
      assert.equal(await instanceOf(retry), 'main');
      assert.equal(await instanceOf(delivered), 'dead', 'finished rows keep the instance that delivered them');
      assert.equal(await instanceOf(mine), 'main');
      assert.ok(cap.lines.some((l) => l.task === 'reclaim' && l.level === 40 && l.deliveries === 2), 'a warning names what moved');

      // The handler moves to instance b: its waiting rows follow at the next pass.
      await t.db.query(sql`UPDATE espf.handlers SET instance = 'b' WHERE name = 'EventSender'`);
      await openGates(t.db);
      const again = await runMaintenancePass({ db: t.db, log: quiet, instance: 'main' });
      assert.equal(again.reclaim?.total, 3);
      for (const i of [pending, retry, mine]) assert.equal(await instanceOf(i), 'b');

      await openGates(t.db);
      const nothing = await runMaintenancePass({ db: t.db, log: quiet, instance: 'main' });
      assert.deepEqual(nothing.reclaim, { moved: [], total: 0 });
    });
  });

  describe('slot lag', () => {
    after(async () => {
      await t.db.query(sql`SELECT pg_drop_replication_slot('espf_lagging')`);
      await t.db.query(sql`UPDATE espf.maintenance SET slot_lag_warn_bytes = 1073741824`);
    });

    it('measures WAL behind every espf_% slot and warns past slot_lag_warn_bytes', async () => {
      await t.db.query(sql`SELECT pg_create_logical_replication_slot('espf_lagging', 'pgoutput')`);
      // WAL the slot has not consumed: about 1 MB of rows.
      await t.db.query(sql`CREATE TABLE public.filler AS SELECT g, repeat('x', 1000) AS pad FROM generate_series(1, 1000) g`);
      await t.db.query(sql`UPDATE espf.maintenance SET slot_lag_warn_bytes = 500000`);
      const lagNow = async () => Number((await t.db.query(sql`
        SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint AS lag FROM pg_replication_slots WHERE slot_name = 'espf_lagging'`))[0].lag);
      // pg_current_wal_lsn() is the WAL written so far: the WAL writer writes it out within wal_writer_delay.
      const before = await eventually(async () => { const l = await lagNow(); return l > 500000 && l; }, 10_000, 'the filler WAL to be written');

      const cap = capturingLogger();
      await openGates(t.db);
      const report = await runMaintenancePass({ db: t.db, log: cap.log, instance: 'main' });
      const after = await lagNow();
      assert.deepEqual(report.errors, []);
      const slot = report.slot_lag?.slots.find((s) => s.slot_name === 'espf_lagging');
      assert.ok(slot, 'the slot is measured');
      assert.ok(slot.lag_bytes >= before && slot.lag_bytes <= after, `${before} <= ${slot.lag_bytes} <= ${after}`);
      assert.equal(slot.active, false);
      assert.deepEqual(report.slot_lag?.lagging, ['espf_lagging']);
      const warning = cap.lines.find((l) => l.task === 'slot_lag' && l.slot === 'espf_lagging');
      assert.ok(warning, 'a warning for the slot');
      assert.equal(warning.level, 40);
      assert.match(String(warning.msg), /espf_lagging is .* behind/);

      // Below the threshold: measured, no warning.
      await t.db.query(sql`UPDATE espf.maintenance SET slot_lag_warn_bytes = 1073741824`);
      const quietCap = capturingLogger();
      await openGates(t.db);
      const calm = await runMaintenancePass({ db: t.db, log: quietCap.log, instance: 'main' });
      assert.ok(calm.slot_lag?.slots.some((s) => s.slot_name === 'espf_lagging'));
      assert.deepEqual(calm.slot_lag?.lagging, []);
      assert.equal(quietCap.lines.filter((l) => l.task === 'slot_lag').length, 0);
    });
  });

  describe('configuration rows', () => {
    it('refuses bad espf.maintenance values naming the column and the rule', async () => {
      await assert.rejects(t.db.query(sql`UPDATE espf.maintenance SET purge_batch = 0`), /espf\.maintenance\.purge_batch: must be between 1 and 100000/);
      await assert.rejects(t.db.query(sql`UPDATE espf.maintenance SET retention = '-1 day'`), /espf\.maintenance\.retention: must be > 0/);
      await assert.rejects(t.db.query(sql`UPDATE espf.maintenance SET pass_interval = '0'`), /espf\.maintenance\.pass_interval: must be > 0/);
      await assert.rejects(t.db.query(sql`UPDATE espf.maintenance SET slot_lag_warn_bytes = 0`), /espf\.maintenance\.slot_lag_warn_bytes: must be >= 1/);
      await assert.rejects(t.db.query(sql`INSERT INTO espf.maintenance (id) VALUES (false)`), /maintenance_one_row/);
      await assert.rejects(t.db.query(sql`DELETE FROM espf.maintenance`), /espf\.maintenance\.id: the settings row of espf\.maintenance cannot be deleted; UPDATE it instead/);
      await assert.rejects(t.db.query(sql`DELETE FROM espf.notifications`), /espf\.notifications\.id: the settings row/);
    });
  });

  describe('espf run', () => {
    it('runs maintenance passes and stops cleanly on SIGTERM', async function () {
      this.timeout(90_000);
      await t.db.query(sql`UPDATE espf.maintenance_runs SET last_run_at = '-infinity', last_instance = NULL, last_result = NULL`);
      const p = new EspfProcess(t.url, 'main');
      try {
        await p.streaming();
        // The first cron tick is within 15 s.
        const runs = await eventually(async () => {
          const rows = await t.db.query(sql`SELECT task, last_instance, last_result FROM espf.maintenance_runs WHERE task <> 'digest' AND last_result IS NOT NULL`);
          return rows.length === 3 && rows;
        }, 40_000, 'espf run to run purge, reclaim and slot_lag');
        for (const r of runs) assert.equal(r.last_instance, 'main');
        const lag = runs.find((r: { task: string }) => r.task === 'slot_lag');
        assert.ok(lag.last_result.slots.some((s: { slot_name: string }) => s.slot_name === 'espf_main'), 'its own slot is measured');
      } finally {
        await p.stop();
      }
      assert.equal(p.exitCode, 0, p.output);
      assert.match(p.output, /maintenance scheduled/);
      assert.doesNotMatch(p.output, /maintenance task .* failed/);
    });
  });

  describe('startMaintenance', () => {
    it('guards against re-entry and stop() waits for the pass in progress', async () => {
      const m = startMaintenance({ db: t.db, log: quiet, instance: 'main', slot: 'espf_main' });
      await openGates(t.db);
      const other = connect({ connectionString: t.url, poolSize: 1 });
      let release!: () => void;
      const released = new Promise<void>((r) => { release = r; });
      let locked!: () => void;
      const isLocked = new Promise<void>((r) => { locked = r; });
      // Hold the gate row of the first task: the pass waits on it.
      const holder = other.tx(async (tx) => {
        await tx.query(sql`SELECT 1 FROM espf.maintenance_runs WHERE task = 'reclaim' FOR UPDATE`);
        locked();
        await released;
      });
      try {
        await isLocked;
        const first = m.runNow();
        await eventually(async () => {
          const [r] = await t.db.query(sql`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%claim_maintenance%'`);
          return r.n > 0;
        }, 10_000, 'the pass to wait on the gate row');
        assert.equal(await m.runNow(), undefined, 'a second pass does not start while one is in progress');
        let stopped = false;
        const stopping = m.stop().then(() => { stopped = true; });
        await t.db.query(sql`SELECT 1`);
        assert.equal(stopped, false, 'stop() waits for the pass in progress');
        release();
        await holder;
        await stopping;
        const report = await first;
        assert.ok(report, 'the pass finished');
        assert.deepEqual(report.errors, []);
        assert.equal(report.purge, undefined, 'tasks after stop() do not start');
      } finally {
        release();
        await holder.catch(() => undefined);
        await other.dispose();
        await m.stop();
      }
    });
  });
});
