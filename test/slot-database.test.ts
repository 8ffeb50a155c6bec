// Slot names are per server, not per database: two espf databases on one
// PostgreSQL server (staging beside production, two brands). A slot is ours
// only when it was made in our database (src/db/replication.ts slotState, which
// the catch-up of src/run/catch-up.ts and the stream ask); each database's
// instance gets a slot name of its own (sql/015_shards.sql, "Slot names"), and
// a slot name another database has is refused in one line at start.
import assert from 'node:assert/strict';
import { sql } from '@databases/pg';
import { pino } from 'pino';
import { connect } from '../src/db/connect.ts';
import { claimSlotName, createSlot, slotLagBytes, slotState } from '../src/db/replication.ts';
import { migrate } from '../src/migrate/migrate.ts';
import { catchUp } from '../src/run/catch-up.ts';
import { WHOLE } from '../src/run/shard.ts';
import { EspfProcess, runEspf } from './support/child.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { TestReceiver } from './support/receiver.ts';
import { addAccounts, configureEventSender, seedCustomer, startSender } from './support/sender.ts';
import { previousRelease } from './support/upgrade.ts';

/** What espf run writes at start: a refused start leaves these as they were. */
async function startState(t: TestDatabase): Promise<unknown> {
  const [r] = await t.db.query(sql`
    SELECT (SELECT coalesce(jsonb_agg(to_jsonb(i) ORDER BY name), '[]') FROM espf.instances i) AS instances,
           (SELECT coalesce(jsonb_agg(to_jsonb(c) ORDER BY handler), '[]') FROM espf.handler_coverage c) AS coverage,
           (SELECT coalesce(jsonb_agg(to_jsonb(s) ORDER BY instance), '[]') FROM espf.slots s) AS slots,
           (SELECT count(*)::int FROM pg_replication_slots r WHERE r.database = current_database()) AS our_slots`);
  return r;
}

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

  it('slotState: present in the database that made it, absent in the other, which names the first', async () => {
    const [where] = await b.db.query(sql`SELECT database FROM pg_replication_slots WHERE slot_name = ${slot}`);
    assert.equal(where.database, a.name, 'the slot is visible from both databases, and belongs to the first');
    const ours = await slotState(a.db, slot);
    assert.deepEqual([ours.present, ours.lost, ours.elsewhere], [true, false, null]);
    const other = await slotState(b.db, slot);
    assert.deepEqual([other.present, other.lost, other.elsewhere], [false, false, a.name]);
    assert.equal(other.failover, null);
  });

  it('slotLagBytes: a number in the database that made it, null in the other', async () => {
    assert.equal(typeof await slotLagBytes(a.db, slot), 'number');
    assert.equal(await slotLagBytes(b.db, slot), null);
  });

  it('the catch-up of the other database refuses the slot in one line (ESPF_SLOT_ELSEWHERE) and changes nothing; the first\'s finds it there', async () => {
    const log = pino({ level: 'silent' });
    let prepared = 0;
    const run = (t: TestDatabase) => catchUp({ db: t.db, instance: 'main', shard: WHOLE, slot, prepareSlot: async () => { prepared++; }, log });
    const before = await startState(b);
    await assert.rejects(run(b), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ESPF_SLOT_ELSEWHERE');
      assert.ok(!err.message.includes('\n'), 'one line');
      assert.match(err.message, new RegExp(`^replication slot ${slot} belongs to database ${a.name} on this server, not to this one`));
      return true;
    });
    assert.equal(prepared, 0, 'no slot made');
    assert.deepEqual(await startState(b), before);
    assert.equal((await run(a)).slotCreated, false);
  });
});

describe('two espf databases on one server, each with its own espf run', function () {
  this.timeout(90_000);
  const dbs: TestDatabase[] = [];
  const receivers: TestReceiver[] = [];
  const procs: EspfProcess[] = [];
  after(async () => {
    for (const p of procs) await p.stop();
    for (const r of receivers) await r.close();
    for (const t of dbs) await t.drop();
  });

  it('both stream a slot of their own and deliver every event of their database to their receiver', async () => {
    for (let i = 0; i < 2; i++) {
      const t = await createTestDatabase();
      dbs.push(t);
      const rx = await new TestReceiver().listen();
      receivers.push(rx);
      await configureEventSender(t.db, rx.url, ['Account/New']);
    }
    const [a, b] = dbs as [TestDatabase, TestDatabase];
    // One after the other: the first takes the classic name, the second sees it is another database's.
    for (const t of dbs) {
      const p = new EspfProcess(t.url);
      procs.push(p);
      await p.streaming();
    }
    const [oidB] = await b.db.query(sql`SELECT oid::text AS oid FROM pg_database WHERE datname = current_database()`);
    assert.match(procs[0]!.output, /streaming slot espf_main\b(?!_)/);
    assert.match(procs[1]!.output, new RegExp(`streaming slot espf_main_db${oidB.oid}\\b`));
    const slots = await a.db.query(sql`
      SELECT slot_name, database, active FROM pg_replication_slots WHERE database IN (${a.name}, ${b.name}) ORDER BY slot_name`);
    assert.deepEqual(slots, [
      { slot_name: 'espf_main', database: a.name, active: true },
      { slot_name: `espf_main_db${oidB.oid}`, database: b.name, active: true },
    ]);
    // Each database keeps its name in espf.slots.
    assert.deepEqual(await b.db.query(sql`SELECT instance, shard, shards, slot_name FROM espf.slots`),
      [{ instance: 'main', shard: 0, shards: 1, slot_name: `espf_main_db${oidB.oid}` }]);

    // Events in both databases at once: each receiver gets its own database's, all of them.
    const want: Set<number>[] = [];
    await Promise.all(dbs.map(async (t, i) => {
      const ids = await seedCustomer(t.db, { name: `brand${i}` });
      await addAccounts(t.db, ids, 25, `db${i}-`);
      await addAccounts(t.db, ids, 25, `db${i}-more-`);
      const rows: { i_event: string }[] = await t.db.query(sql`SELECT i_event FROM espf.events WHERE event_type = 'Account/New'`);
      want[i] = new Set(rows.map((r) => Number(r.i_event)));
    }));
    for (let i = 0; i < 2; i++) {
      const rx = receivers[i]!;
      await rx.waitFor(() => new Set(rx.received.map((r) => Number(r.json.variables.i_event))).size >= want[i]!.size, 30_000, `database ${i}: ${want[i]!.size} events`);
      const got = new Set(rx.received.map((r) => Number(r.json.variables.i_event)));
      assert.deepEqual([...got].sort((x, y) => x - y), [...want[i]!].sort((x, y) => x - y));
      const ids = new Set(rx.received.map((r) => String(r.json.variables.id)));
      assert.ok([...ids].every((id) => id.startsWith(`db${i}-`)), `database ${i}'s receiver got only its events`);
    }
    assert.doesNotMatch(procs[1]!.output, /not created in this database/);
    process.stderr.write(`# two databases: ${want[0]!.size} + ${want[1]!.size} events delivered, slots espf_main and espf_main_db${oidB.oid}\n`);

    // The name is recorded: it does not move when the first database's slot goes.
    await procs[0]!.stop();
    await a.db.query(sql`SELECT pg_drop_replication_slot('espf_main')`);
    assert.equal(await claimSlotName(b.db, 'main', WHOLE), `espf_main_db${oidB.oid}`);
  });

  it('espf run refuses in one line, changing nothing, when the slot name in espf.slots is another database\'s (a database cloned with its rows)', async () => {
    const [b] = dbs.slice(1) as [TestDatabase];
    const c = await createTestDatabase();
    dbs.push(c);
    const [{ slot }] = await b.db.query(sql`SELECT slot_name AS slot FROM espf.slots`);
    await c.db.query(sql`INSERT INTO espf.slots (instance, shard, shards, slot_name) VALUES ('main', 0, 1, ${slot})`);
    const before = await startState(c);
    const r = await runEspf(['run', '--instance', 'main'], { DATABASE_URL: c.url, ESPF_HTTP_PORT: '0' });
    assert.notEqual(r.code, 0);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`replication slot ${slot} belongs to database ${b.name} on this server, not to this one`));
    assert.deepEqual(await startState(c), before, 'nothing changed');
  });
});

describe('slot names: upgrade from the previous release (migrations/0019_slot_names.sql)', function () {
  it('an instance whose slot exists keeps its name, and streams from it the events committed while it was upgraded', async function () {
    this.timeout(60_000);
    const prev = await previousRelease('0019_slot_names.sql');
    if (!prev) this.skip(); // not a git checkout
    const e = await createTestDatabase({ empty: true });
    const db = connect({ connectionString: e.url, poolSize: 2 });
    const rx = await new TestReceiver().listen();
    let run: Awaited<ReturnType<typeof startSender>> | undefined;
    try {
      await migrate(db, prev!);
      await configureEventSender(db, rx.url, ['Account/New']);
      const ids = await seedCustomer(db);
      await addAccounts(db, ids, 5, 'before-');
      // As the previous release's espf run left it: its slot, its deliveries.
      await db.query(sql`SELECT pg_create_logical_replication_slot('espf_main', 'pgoutput')`);
      await db.query(sql`INSERT INTO espf.event_deliveries (i_event, handler, state, event_type, order_key, i_account, instance, commit_lsn, attempts)
                         SELECT i_event, 'EventSender', 'DELIVERED', event_type, 'a:' || (variables ->> 'i_account'), (variables ->> 'i_account')::bigint,
                                'main', '0/10', 1 FROM espf.events`);
      await addAccounts(db, ids, 7, 'after-');
      const events = await db.query(sql`SELECT to_jsonb(e) AS e FROM espf.events e ORDER BY i_event`);
      const r = await migrate(db);
      assert.ok(r.applied.includes('0019_slot_names.sql'), `applied ${r.applied.join(', ')}`);
      assert.deepEqual(await db.query(sql`SELECT to_jsonb(e) - 'target_handler' AS e FROM espf.events e ORDER BY i_event`), events);
      run = await startSender(db, e.url);
      assert.equal(run.sender.slot, 'espf_main');
      await rx.waitFor(() => rx.received.length >= 7, 20_000, 'the 7 events committed after the slot');
      assert.deepEqual(rx.received.map((x) => String(x.json.variables.id).replace(/\d+$/, '')).sort(), Array(7).fill('after-'));
      assert.deepEqual(await db.query(sql`SELECT slot_name FROM espf.slots`), [{ slot_name: 'espf_main' }]);
      assert.deepEqual((await migrate(db)).applied, [], 'a second migrate applies nothing');
    } finally {
      await run?.stop();
      await rx.close();
      await db.dispose();
      await e.drop();
    }
  });
});
