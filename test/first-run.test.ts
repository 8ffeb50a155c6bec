import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from '@databases/pg';
import { connect, type Db } from '../src/db/connect.ts';
import { migrate, readMigrations } from '../src/migrate/migrate.ts';
import { ROOT } from '../src/paths.ts';
import { freePort } from '../src/db/cluster.ts';
import type { EspfProcess } from './support/child.ts';
import { espf } from './support/cli.ts';
import { readStatus } from '../src/cli/status-command.ts';
import { Metrics } from '../src/metrics/metrics.ts';
import { createEmptyDatabase, type TestDatabase } from './support/database.ts';
import { deliveryFixture, type SenderRun } from './support/fixture.ts';
import { eventually, TestReceiver, type Received } from './support/receiver.ts';
import { addAccounts, configureEventSender, seedCustomer, startSender } from './support/sender.ts';

// Events committed before an instance first streams (or while a handler waits
// on an instance that has not run yet) are delivered when it starts: the
// catch-up of sql/450_catch_up.sql, before the stream, with no duplicates and
// in per-account order.

const TYPES = ['Account/New', 'Account/Blocked', 'Account/Unblocked'];

/** i_events received more than once. */
function duplicates(rx: TestReceiver): number[] {
  const seen = new Set<number>();
  const dup: number[] = [];
  for (const r of rx.received) {
    const i = r.json.variables.i_event;
    if (seen.has(i)) dup.push(i); else seen.add(i);
  }
  return dup;
}

/** Per account, the i_events in the order received must be increasing (commit order). */
function assertPerAccountOrder(received: readonly Received[]): void {
  const last = new Map<unknown, number>();
  for (const r of received) {
    const a = r.json.variables.i_account;
    const i = r.json.variables.i_event;
    const prev = last.get(a);
    assert.ok(prev === undefined || prev < i, `account ${String(a)}: i_event ${i} arrived after ${prev}`);
    last.set(a, i);
  }
}

/** One transaction flipping `blocked` on every account: an Account/Blocked or /Unblocked each. */
async function flip(db: Db, accounts: number[]): Promise<void> {
  await db.query(sql`UPDATE billing.account SET blocked = NOT blocked WHERE i_account = ANY(${accounts}::bigint[])`);
}

async function eventsFor(db: Db, types: string[], since = 0): Promise<number[]> {
  const rows = await db.query(sql`SELECT i_event FROM espf.events WHERE event_type = ANY(${types}::text[]) AND i_event > ${since} ORDER BY i_event`);
  return rows.map((r) => Number(r.i_event));
}

describe('first run: nothing lost before an instance first streams', function () {
  let t: TestDatabase;
  let rx: TestReceiver;
  let rx2: TestReceiver;
  let run: SenderRun | undefined;
  let hss: SenderRun | undefined;
  let accounts: number[];
  let others: number[];

  // Configuring and the first start are the steps under test: the tests take them.
  const f = deliveryFixture({ seed: false, sender: false, prepare: async () => { rx2 = await new TestReceiver().listen(); } });
  before(() => { ({ t, rx } = f); });
  after(async () => { await rx2?.close(); });

  it('delivers events written between migrate + configuration and the first espf run, in per-account order, once each (a dispatcher\'s too)', async function () {
    this.timeout(180_000);  // the writers run for as long as start-up takes: a loaded machine writes more
    // Configure, as a DBA would after espf migrate; one request at a time, so that arrival order is send order.
    await configureEventSender(t.db, rx.url, TYPES, { async_mode: false });
    await t.db.query(sql`UPDATE espf.event_types SET enabled = true WHERE name = 'Customer/Blocked'`);
    await t.db.query(sql`UPDATE espf.handlers SET enabled = true WHERE name = 'CustomerToAccountsDispatcher'`);
    await t.db.query(sql`INSERT INTO espf.subscriptions VALUES ('CustomerToAccountsDispatcher', 'Customer/Blocked')`);
    // The billing application writes before any espf run.
    const ids = await seedCustomer(t.db);
    accounts = await addAccounts(t.db, ids, 20, '+1555010');
    for (let k = 0; k < 5; k++) await flip(t.db, accounts);
    const other = await seedCustomer(t.db, { name: 'Other' });
    others = await addAccounts(t.db, other, 3, '+1555020');
    await t.db.query(sql`UPDATE billing.customer SET blocked = true WHERE i_customer = ${other.i_customer}`);
    const [slots] = await t.db.query(sql`SELECT count(*)::int AS n FROM pg_replication_slots WHERE database = current_database()`);
    assert.equal(slots.n, 0, 'no slot yet: nothing has streamed');
    const before = await eventsFor(t.db, TYPES);
    assert.equal(before.length, 20 + 5 * 20 + 3, 'events waiting in the outbox');

    // The billing application keeps writing, back to back on two connections, while espf run
    // starts: commits land before its slot, between the slot and the catch-up, and after.
    let writing = true;
    const writer = (part: number[]) => (async () => {
      let rounds = 0;
      while (writing || rounds < 3) {
        await flip(t.db, part);
        rounds++;
      }
    })();
    const writers = [writer(accounts.slice(0, 3)), writer(accounts.slice(3, 6))];
    const metrics = new Metrics({ processMetrics: false });
    run = await f.startSender({ metrics });
    writing = false;
    await Promise.all(writers);

    // Every Account/* event (the dispatched Account/Blocked of the other customer's accounts too) arrives once.
    const expected = await eventually(async () => {
      const evs = await eventsFor(t.db, TYPES);
      const dispatched = await t.db.query(sql`SELECT count(*)::int AS n FROM espf.events WHERE source_i_event IS NOT NULL`);
      return dispatched[0].n === 3 ? evs : undefined;
    }, 15_000, 'the dispatcher to run on the customer block');
    await rx.waitWhileArriving(() => new Set(rx.received.map((r) => r.json.variables.i_event)).size >= expected.length, 15_000, `${expected.length} events`);
    // A last event, committed after everything: with one request at a time, a duplicate would arrive before it.
    await flip(t.db, [accounts[0]!]);
    const [marker] = await t.db.query(sql`SELECT max(i_event)::int AS i FROM espf.events`);
    await rx.waitFor(() => rx.received.some((r) => r.json.variables.i_event === marker.i), 15_000, 'the last event');
    assert.deepEqual(duplicates(rx), [], 'no event twice');
    assert.deepEqual([...new Set(rx.received.map((r) => r.json.variables.i_event))].sort((a, b) => a - b), [...expected, marker.i]);
    assertPerAccountOrder(rx.received);
    // The other customer's accounts got their dispatched Account/Blocked.
    for (const a of others) assert.ok(rx.received.some((r) => r.json.variables.i_account === a && r.json.event_type === 'Account/Blocked'));

    // Counted, recorded, and every delivery row is DELIVERED.
    const [inst] = await t.db.query(sql`SELECT * FROM espf.instances WHERE name = 'main'`);
    assert.ok(Number(inst.caught_up_events) >= before.length + 1, `caught up ${inst.caught_up_events}`);  // + the customer block, dispatched
    const text = await metrics.text();
    const m = /espf_caught_up_events_total\{handler="EventSender"\} (\d+)/.exec(text);
    assert.ok(m && Number(m[1]) >= before.length, text.split('\n').filter((l) => l.includes('caught_up')).join('\n'));
    assert.match(text, /espf_caught_up_events_total\{handler="CustomerToAccountsDispatcher"\} 1\b/);
    await eventually(async () => {
      const [r] = await t.db.query(sql`SELECT count(*) FILTER (WHERE state <> 'DELIVERED')::int AS open FROM espf.event_deliveries WHERE handler = 'EventSender'`);
      return r.open === 0;
    }, 10_000, 'every EventSender row DELIVERED');
  });

  it('a restart after a normal run sends nothing twice and catches nothing up', async () => {
    await run!.stop();
    run = undefined;
    const sent = rx.received.length;
    await flip(t.db, accounts.slice(0, 3));  // written while stopped: the slot carries them
    run = await f.startSender();
    await flip(t.db, accounts.slice(0, 3));
    const [last] = await t.db.query(sql`SELECT max(i_event)::int AS i FROM espf.events`);
    await rx.waitFor(() => rx.received.some((r) => r.json.variables.i_event === last.i), 15_000, 'the events after the restart');
    assert.equal(rx.received.length, sent + 6);
    assert.deepEqual(duplicates(rx), []);
    assertPerAccountOrder(rx.received);
    const [inst] = await t.db.query(sql`SELECT caught_up_events FROM espf.instances WHERE name = 'main'`);
    assert.equal(Number(inst.caught_up_events), 0, 'the slot covered everything: nothing to catch up');
  });

  it('a handler moved to an instance that has not run yet: reported as waiting with its events counted, then delivered when that instance starts', async () => {
    // A second http handler, served by main at first.
    await t.db.tx(async (tx) => {
      await tx.query(sql`INSERT INTO espf.handlers (name, kind) VALUES ('Hss', 'http')`);
      await tx.query(sql`INSERT INTO espf.http_handlers (handler, url, async_mode, retry_delay, retry_max_delay) VALUES ('Hss', ${[rx2.url]}::text[], false, 0.05, 0.2)`);
      await tx.query(sql`UPDATE espf.handlers SET enabled = true WHERE name = 'Hss'`);
      await tx.query(sql`INSERT INTO espf.subscriptions SELECT 'Hss', unnest(${TYPES}::text[])`);
    });
    await eventually(async () => run!.sender.servedHandlers.includes('Hss'), 10_000, 'main to serve Hss');
    await eventually(async () => (await t.db.query(sql`SELECT 1 FROM espf.handler_coverage WHERE handler = 'Hss' AND served_by = 'main'`))[0], 10_000, 'main\'s heartbeat to cover Hss');
    const [start] = await t.db.query(sql`SELECT max(i_event)::int AS i FROM espf.events`);
    await flip(t.db, accounts.slice(0, 4));
    await rx2.waitFor(() => rx2.received.length >= 4, 15_000, 'Hss served by main');

    // Moved to instance hss, which has never run; main lets go of it.
    await t.db.query(sql`UPDATE espf.handlers SET instance = 'hss' WHERE name = 'Hss'`);
    await eventually(async () => !run!.sender.servedHandlers.includes('Hss'), 10_000, 'main to let go of Hss');
    const [moved] = await t.db.query(sql`SELECT max(i_event)::int AS i FROM espf.events`);
    for (let k = 0; k < 3; k++) await flip(t.db, accounts.slice(0, 6));
    const waitingEvents = await eventsFor(t.db, TYPES, moved.i);
    assert.equal(waitingEvents.length, 18);

    // Reported: the view, espf status, and main's /healthz (its registry).
    const [w] = await t.db.query(sql`SELECT * FROM espf.report_waiting_handlers WHERE handler = 'Hss'`);
    assert.equal(w.instance, 'hss');
    assert.equal(w.instance_state, 'never streamed');
    assert.equal(Number(w.waiting_events), 18);
    const status = await readStatus(t.db, { hours: 1, limit: 5 });
    assert.deepEqual(status.waiting_on_instances.map((r) => [r.handler, r.instance, Number(r.waiting_events)]), [['Hss', 'hss', 18]]);
    await eventually(async () => run!.registry.waitingHandlers.some((x) => x.handler === 'Hss' && x.instance === 'hss' && x.waiting_events === 18), 10_000, 'main to report Hss waiting on hss');
    assert.equal(rx2.received.length, 4, 'nothing went to Hss while it waited');

    // hss starts: the 18 events arrive, once each, in per-account order; nothing main delivered comes again.
    const metrics = new Metrics({ processMetrics: false });
    hss = await f.startSender({ instance: 'hss', metrics });
    await flip(t.db, accounts.slice(0, 2));   // and what comes after, streamed
    const after = await eventsFor(t.db, TYPES, start.i);
    await rx2.waitFor(() => rx2.received.length >= after.length, 15_000, `${after.length} events at Hss`);
    assert.deepEqual(rx2.received.map((r) => r.json.variables.i_event).sort((a, b) => a - b), after);
    assert.deepEqual(duplicates(rx2), []);
    assertPerAccountOrder(rx2.received);
    assert.match(await metrics.text(), /espf_caught_up_events_total\{handler="Hss"\} 18\b/);
    await eventually(async () => (await t.db.query(sql`SELECT count(*)::int AS n FROM espf.report_waiting_handlers`))[0].n === 0, 10_000, 'no handler waiting any more');
    await eventually(async () => !run!.registry.waitingHandlers.length, 10_000, 'main\'s report to clear');
  });
});

// The release before migrations/0009_first_run.sql: main at this commit.
const PREVIOUS_RELEASE = '96d571c';

describe('upgrade from the previous release, with events and deliveries in the database', function () {
  // Not test/support/fixture.ts: the database is migrated by the previous release, not cloned from this one's template.
  let e: Awaited<ReturnType<typeof createEmptyDatabase>>;
  let db: Db;
  let dir: string;
  let rx: TestReceiver;
  let rx2: TestReceiver;
  const runs: Awaited<ReturnType<typeof startSender>>[] = [];

  before(async () => {
    e = await createEmptyDatabase();
    db = connect({ connectionString: e.url, poolSize: 4 });
    dir = mkdtempSync(path.join(os.tmpdir(), 'espf-previous-'));
    // migrations/ and sql/ of the previous release, from this repository's history.
    execFileSync('sh', ['-c', `git -C "$1" archive ${PREVIOUS_RELEASE} migrations sql | tar -x -C "$2"`, 'sh', ROOT, dir]);
    rx = await new TestReceiver().listen();
    rx2 = await new TestReceiver().listen();
  });
  after(async () => {
    for (const r of runs.reverse()) await r.stop();
    await rx?.close();
    await rx2?.close();
    await db?.dispose();
    await e?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('keeps every row; main (which had streamed) resends nothing; a handler whose instance never ran gets every event', async () => {
    await migrate(db, { migrations: path.join(dir, 'migrations'), repeatable: path.join(dir, 'sql') });
    const [v] = await db.query(sql`SELECT max(version)::int AS v FROM espf.migrations`);
    assert.equal(v.v, 7);
    // Configured and used under the previous release: EventSender on main, which streamed
    // (its slot exists, its outcomes are recorded); Hss on instance hss, which never ran.
    await configureEventSender(db, rx.url, TYPES, { async_mode: false });
    await db.tx(async (tx) => {
      await tx.query(sql`INSERT INTO espf.handlers (name, kind, instance) VALUES ('Hss', 'http', 'hss')`);
      await tx.query(sql`INSERT INTO espf.http_handlers (handler, url, async_mode, retry_delay, retry_max_delay) VALUES ('Hss', ${[rx2.url]}::text[], false, 0.05, 0.2)`);
      await tx.query(sql`UPDATE espf.handlers SET enabled = true WHERE name = 'Hss'`);
      await tx.query(sql`INSERT INTO espf.subscriptions SELECT 'Hss', unnest(${TYPES}::text[])`);
    });
    await db.query(sql`SELECT pg_create_logical_replication_slot('espf_main', 'pgoutput')`);
    const ids = await seedCustomer(db);
    const accounts = await addAccounts(db, ids, 5, '+1555030');
    await flip(db, accounts);
    await flip(db, accounts);
    const old = await eventsFor(db, TYPES);
    assert.equal(old.length, 15);
    const retried = old[old.length - 1]!;
    // What the previous release's sender recorded: every event delivered to EventSender but one, waiting for a retry.
    // Its commit_lsn was at or after the event's commit: the WAL insert position now (the write
    // position, pg_current_wal_lsn(), may still be behind a commit when synchronous_commit is off).
    await db.query(sql`
      SELECT espf.record_deliveries('main', jsonb_agg(jsonb_build_object(
               'i_event', e.i_event, 'handler', 'EventSender', 'state', CASE WHEN e.i_event = ${retried} THEN 'RETRY' ELSE 'DELIVERED' END,
               'event_type', e.event_type, 'order_key', 'a:' || (e.variables ->> 'i_account'), 'i_account', (e.variables ->> 'i_account')::bigint,
               'commit_lsn', pg_current_wal_insert_lsn()::text, 'attempts', 1, 'urls_done', CASE WHEN e.i_event = ${retried} THEN 0 ELSE 1 END,
               'last_http_status', CASE WHEN e.i_event = ${retried} THEN 503 ELSE 200 END,
               'next_attempt_at', extract(epoch FROM now()) * 1000, 'committed_at', extract(epoch FROM e.created_at) * 1000,
               'first_attempt_at', extract(epoch FROM now()) * 1000, 'last_attempt_at', extract(epoch FROM now()) * 1000,
               'finished_at', CASE WHEN e.i_event = ${retried} THEN NULL ELSE extract(epoch FROM now()) * 1000 END,
               'n', e.i_event) ORDER BY e.i_event))
        FROM espf.events e`);
    await db.query(sql`SELECT pg_replication_slot_advance('espf_main', pg_current_wal_lsn())`);
    const count = async () => (await db.query(sql`SELECT (SELECT count(*) FROM espf.events)::int AS events,
      (SELECT count(*) FROM espf.event_deliveries)::int AS deliveries, (SELECT count(*) FROM espf.account_provisioning_statuses)::int AS statuses`))[0];
    const before = await count();

    const r = await migrate(db);
    assert.deepEqual(r.applied, (await readMigrations()).filter((m) => m.version > 7).map((m) => m.name));
    assert.ok(r.applied.includes('0009_first_run.sql'));
    assert.deepEqual(await count(), before, 'every event, delivery and status kept');
    const handlers = await db.query(sql`SELECT h.name, h.enabled_at = '-infinity' AS since_ever, c.served_by, x.event_names
      FROM espf.handlers h LEFT JOIN espf.handler_coverage c ON c.handler = h.name LEFT JOIN espf.http_handlers x ON x.handler = h.name
      WHERE h.enabled ORDER BY h.name`);
    assert.deepEqual(handlers.map((h) => [h.name, h.since_ever, h.served_by, h.event_names]),
      [['EventSender', true, 'main', {}], ['Hss', true, null, {}]]);
    const [subs] = await db.query(sql`SELECT bool_and(created_at = '-infinity') AS all_old FROM espf.subscriptions`);
    assert.equal(subs.all_old, true);
    const waiting = await db.query(sql`SELECT handler, instance, instance_state, waiting_events::int AS n FROM espf.report_waiting_handlers ORDER BY handler`);
    assert.deepEqual(waiting.map((w) => [w.handler, w.instance, w.instance_state, w.n]),
      [['EventSender', 'main', 'not streaming', 0], ['Hss', 'hss', 'never streamed', 15]]);

    // main starts under the new release: only the waiting retry goes out, then what is new.
    runs.push(await startSender(db, e.url, 'main'));
    await rx.waitFor(() => rx.received.length >= 1, 15_000, 'the retry');
    await flip(db, accounts.slice(0, 2));
    const fresh = await eventsFor(db, TYPES, old[old.length - 1]);
    await rx.waitFor(() => rx.received.length >= 1 + fresh.length, 15_000, 'the new events');
    assert.deepEqual(rx.received.map((x) => x.json.variables.i_event), [retried, ...fresh]);
    const [main] = await db.query(sql`SELECT caught_up_events FROM espf.instances WHERE name = 'main'`);
    assert.equal(Number(main.caught_up_events), 0);

    // hss, which never ran: every event since ever, once each, in per-account order.
    runs.push(await startSender(db, e.url, 'hss'));
    const all = await eventsFor(db, TYPES);
    await rx2.waitFor(() => rx2.received.length >= all.length, 15_000, `${all.length} events at Hss`);
    assert.deepEqual(rx2.received.map((x) => x.json.variables.i_event).sort((a, b) => a - b), all);
    assert.deepEqual(duplicates(rx2), []);
    assertPerAccountOrder(rx2.received);
    assert.equal(rx.received.length, 1 + fresh.length, 'EventSender got nothing twice');
  });
});

describe('first run of espf run (a child process): the log, /healthz and espf status', function () {
  let t: TestDatabase;
  let rx: TestReceiver;
  let proc: EspfProcess | undefined;

  const f = deliveryFixture({ seed: false, sender: false }); // the test configures and starts espf run
  before(() => { ({ t, rx } = f); });

  it('says what it caught up, and which handler waits on which instance with how many events', async () => {
    await configureEventSender(t.db, rx.url, TYPES);
    await t.db.tx(async (tx) => {
      await tx.query(sql`INSERT INTO espf.handlers (name, kind, instance) VALUES ('Hss', 'http', 'hss')`);
      await tx.query(sql`INSERT INTO espf.http_handlers (handler, url) VALUES ('Hss', '{http://127.0.0.1:9/never}')`);
      await tx.query(sql`UPDATE espf.handlers SET enabled = true WHERE name = 'Hss'`);
      await tx.query(sql`INSERT INTO espf.subscriptions VALUES ('Hss', 'Account/New')`);
    });
    const ids = await seedCustomer(t.db);
    const accounts = await addAccounts(t.db, ids, 4, '+1555040');
    await flip(t.db, accounts);
    const events = await eventsFor(t.db, TYPES);
    assert.equal(events.length, 8);

    const port = await freePort();
    proc = f.spawn({ env: { ESPF_HTTP_PORT: String(port) } });
    await proc.streaming();
    await rx.waitFor(() => rx.received.length >= 8, 15_000, 'the 8 events');
    assert.deepEqual(rx.received.map((r) => r.json.variables.i_event).sort((a, b) => a - b), events);
    assert.match(proc.output, /caught up 8 events for EventSender/);
    assert.match(proc.output, /handler Hss waits on instance hss, which has not streamed yet; 4 events wait/);

    const health = await eventually(async () => {
      const res = await fetch(`http://127.0.0.1:${port}/healthz`);
      const body = await res.json() as { ready: boolean; waiting_on_instances: unknown[] };
      return res.status === 200 && body.waiting_on_instances.length ? body : undefined;
    }, 15_000, '/healthz to list the waiting handler');
    assert.deepEqual(health.waiting_on_instances, [{ handler: 'Hss', instance: 'hss', instance_state: 'never streamed', waiting_events: 4 }]);

    const status = await espf(['status'], { DATABASE_URL: t.url });
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /Handlers waiting on an instance that is not streaming[^\n]*\n.*\n.*\nHss +http +hss +never streamed +4\b/);

    await proc.stop();
    assert.equal(proc.exitCode, 0);
    const [inst] = await t.db.query(sql`SELECT stopped_at IS NOT NULL AND stopped_at >= streamed_at AS stopped, caught_up_events FROM espf.instances WHERE name = 'main'`);
    assert.equal(inst.stopped, true);
    assert.equal(Number(inst.caught_up_events), 8);
  });
});
