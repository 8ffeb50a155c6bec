// An invalidated slot (wal_status = 'lost': the server removed WAL it still
// needed, max_slot_wal_keep_size) can never stream again. espf treats it as
// missing: it drops it, makes it anew and catches up from the outbox what the
// lost slot had not carried (src/stream/replication.ts prepare,
// src/run/catch-up.ts). A real invalidation, on a cluster of its own (the
// setting is server-wide, and it would invalidate other tests' slots).
import assert from 'node:assert/strict';
import { mkdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from '@databases/pg';
import { connect, type Db } from '../src/db/connect.ts';
import { startCluster, type Cluster } from '../src/db/cluster.ts';
import { slotState } from '../src/db/replication.ts';
import { migrate } from '../src/migrate/migrate.ts';
import { withDatabase } from './support/cluster.ts';
import { eventually, TestReceiver } from './support/receiver.ts';
import { addAccounts, configureEventSender, seedCustomer, startSender } from './support/sender.ts';

/** WAL segments written and switched, then a checkpoint, until the slot is invalidated. */
async function invalidate(db: Db, slot: string): Promise<void> {
  await eventually(async () => {
    for (let i = 0; i < 3; i++) {
      await db.query(sql`INSERT INTO billing.product (name) SELECT 'wal filler ' || g FROM generate_series(1, 200) g`);
      await db.query(sql`SELECT pg_switch_wal()`);
    }
    await db.query(sql`CHECKPOINT`);
    const [s] = await db.query(sql`SELECT wal_status FROM pg_replication_slots WHERE slot_name = ${slot}`);
    return s?.wal_status === 'lost';
  }, 30_000, `slot ${slot} invalidated (wal_status lost)`);
}

describe('an invalidated slot (wal_status lost)', function () {
  this.timeout(120_000);
  const base = path.join(os.tmpdir(), `espf-test-${process.pid}`, 'slot-invalidated');
  let cluster: Cluster;
  let db: Db;
  let url: string;
  let rx: TestReceiver;
  before(async () => {
    rmSync(base, { recursive: true, force: true });
    mkdirSync(base, { recursive: true });
    cluster = await startCluster({ dir: base, durable: false });
    const admin = connect({ connectionString: cluster.url, poolSize: 1 });
    try {
      await admin.query(sql`CREATE DATABASE espf_lost`);
      await admin.query(sql`ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'`);
      await admin.query(sql`SELECT pg_reload_conf()`);
    } finally {
      await admin.dispose();
    }
    url = withDatabase(cluster.url, 'espf_lost');
    db = connect({ connectionString: url, poolSize: 4 });
    await migrate(db);
    rx = await new TestReceiver().listen();
    await configureEventSender(db, rx.url, ['Account/New']);
  });
  after(async () => {
    await db?.dispose();
    await rx?.close();
    await cluster?.stop();
    rmSync(base, { recursive: true, force: true });
  });

  it('counts as missing: dropped, made anew, and what it had not carried is caught up from the outbox', async () => {
    const ids = await seedCustomer(db);
    let run = await startSender(db, url);
    const slot = run.sender.slot;
    await addAccounts(db, ids, 10, 'streamed-');
    await rx.waitFor(() => rx.received.length >= 10, 20_000, 'the first 10 events');
    await run.stop();

    // Committed while nothing streams the slot; then the server gives up the WAL it kept for it.
    await addAccounts(db, ids, 15, 'while-lost-');
    await invalidate(db, slot);
    const lost = await slotState(db, slot);
    assert.deepEqual([lost.present, lost.lost], [false, true], 'invalidated: not usable, still listed');

    run = await startSender(db, url);
    try {
      assert.equal(run.sender.slot, slot, 'the same name');
      const want = (await db.query(sql`SELECT i_event FROM espf.events WHERE event_type = 'Account/New'`)).map((r: { i_event: string }) => Number(r.i_event));
      const got = () => new Set(rx.received.map((r) => Number(r.json.variables.i_event)));
      await rx.waitFor(() => { const g = got(); return want.every((i) => g.has(i)); }, 30_000, `all ${want.length} events`);
      const [s] = await db.query(sql`SELECT wal_status, active FROM pg_replication_slots WHERE slot_name = ${slot}`);
      assert.notEqual(s.wal_status, 'lost', 'a new slot');
      assert.equal(s.active, true);
      // It streams: what commits now arrives through the new slot.
      await addAccounts(db, ids, 3, 'after-');
      await rx.waitFor(() => rx.received.filter((r) => String(r.json.variables.id).startsWith('after-')).length === 3, 20_000, 'the events after');
      process.stderr.write(`# invalidated slot: ${want.length} events, ${rx.received.length - got().size} sent twice\n`);
    } finally {
      await run.stop();
    }
  });
});
