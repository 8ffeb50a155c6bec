import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from '@databases/pg';
import { migrate } from '../src/migrate/migrate.ts';
import { runBackfill } from '../src/rules/backfill.ts';
import { EspfProcess, runEspf } from './support/child.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { eventually, TestReceiver } from './support/receiver.ts';
import { addAccounts, configureEventSender, seedCustomer, startSender } from './support/sender.ts';
import { seedUnfinishedBackfill } from './support/backfill-upgrade.ts';
import { databaseAtPreviousRelease } from './support/upgrade.ts';

/**
 * `espf backfill RULE --handler NAME` (migrations/0017_backfill_target.sql,
 * sql/810_backfill.sql): the backfilled events go to that handler only, through
 * the route stage (src/pipeline/route.ts), a dispatcher's fan-out
 * (sql/210_dispatch.sql) and the catch-up (sql/450_catch_up.sql).
 */
describe('espf backfill --handler: one receiver', function () {
  this.timeout(180_000);
  let t: TestDatabase;
  let home: string;
  let ids: { i_product: number; i_customer: number };
  let hss: TestReceiver;  // EventSender, which already has every account
  let crm: TestReceiver;  // Crm, just connected
  const q = (query: ReturnType<typeof sql>) => t.db.query(query);
  const env = () => ({ DATABASE_URL: t.url, ESPF_HOME: home });
  const count = async (query: ReturnType<typeof sql>) => Number((await q(query))[0].n);

  before(async () => {
    t = await createTestDatabase();
    home = await mkdtemp(path.join(os.tmpdir(), 'espf-home-'));
    ids = await seedCustomer(t.db);
    hss = await new TestReceiver().listen();
    crm = await new TestReceiver().listen();
    // A snapshot type of the account, as a local rule; accounts inserted while it is off.
    await q(sql`INSERT INTO espf.event_types (name) VALUES ('Account/State')`);
    await q(sql`INSERT INTO espf.event_rules (name, event_type, source, operations, variables, i_env)
      VALUES ('Account/State', 'Account/State', 'billing.account', '{INSERT}',
              'jsonb_build_object(''i_account'', NEW.i_account, ''blocked'', NEW.blocked)', 'NEW.i_env')`);
    await addAccounts(t.db, ids, 300, 'tg-');
    await configureEventSender(t.db, hss.url, ['Account/State', 'Account/Blocked']);
    await q(sql`INSERT INTO espf.handlers (name, kind) VALUES ('Crm', 'http')`);
    await q(sql`INSERT INTO espf.http_handlers (handler, url, retry_delay, retry_max_delay, token_rate, token_burstiness)
                VALUES ('Crm', ${[crm.url]}::text[], 0.05, 0.2, 1000000, 1000000)`);
    await q(sql`UPDATE espf.handlers SET enabled = true WHERE name = 'Crm'`);
    await q(sql`INSERT INTO espf.subscriptions (handler, event_type) VALUES ('Crm', 'Account/State'), ('Crm', 'Account/Blocked')`);
  });
  after(async () => {
    await hss?.close();
    await crm?.close();
    await t?.drop();
    await rm(home, { recursive: true, force: true });
  });

  const oneLine = (r: { stderr: string }) => assert.equal(r.stderr.split('\n').length, 2, `one line: ${r.stderr}`);

  it('without --handler: names the receivers, asks for --all-handlers, writes nothing; bad targets refused by the database in one line', async () => {
    const events = await count(sql`SELECT count(*) AS n FROM espf.events`);
    const r = await runEspf(['backfill', 'Account/State'], env());
    assert.equal(r.code, 2, r.stderr);
    oneLine(r);
    assert.match(r.stderr, /^espf: backfill of rule 'Account\/State': Account\/State would go to every handler subscribed to it: Crm, EventSender; name the one that needs the events with --handler NAME, or give --all-handlers\n$/);
    const both = await runEspf(['backfill', 'Account/State', '--handler', 'Crm', '--all-handlers'], env());
    assert.equal(both.code, 2);
    assert.equal(both.stderr, 'espf: --handler and --all-handlers: give one of them\n');
    const refusals: [string, RegExp][] = [
      ['Nope', /^espf: backfill: unknown handler 'Nope' \(espf status lists the handlers\)\n$/],
      ['CustomerToAccountsDispatcher', /^espf: backfill: handler 'CustomerToAccountsDispatcher' is a dispatcher: name the http handler that must receive the events\n$/],
    ];
    for (const [h, re] of refusals) {
      const x = await runEspf(['backfill', 'Account/State', '--all-handlers', '--handler', h], env());
      assert.equal(x.code, 2, 'both flags: a usage error first');
      const y = await runEspf(['backfill', 'Account/State', '--handler', h], env());
      assert.equal(y.code, 1, y.stderr);
      assert.match(y.stderr, re);
    }
    // A handler that exists but is not subscribed to the type (nor is a dispatcher of it).
    await q(sql`DELETE FROM espf.subscriptions WHERE handler = 'Crm' AND event_type = 'Account/State'`);
    try {
      const y = await runEspf(['backfill', 'Account/State', '--handler', 'Crm'], env());
      assert.equal(y.code, 1);
      assert.equal(y.stderr, "espf: backfill: handler 'Crm' is not subscribed to Account/State (espf handler sub Crm Account/State)\n");
      // The same check, run by the database for any caller, with its SQLSTATE.
      await assert.rejects(q(sql`SELECT espf.start_backfill('Account/State', NULL, 10, 'Crm')`),
        (err: Error & { code?: string }) => err.code === '22023' && !/\n/.test(err.message));
    } finally {
      await q(sql`INSERT INTO espf.subscriptions (handler, event_type) VALUES ('Crm', 'Account/State')`);
    }
    assert.equal(await count(sql`SELECT count(*) AS n FROM espf.backfills`), 0, 'no backfill recorded');
    assert.equal(await count(sql`SELECT count(*) AS n FROM espf.events`), events, 'no event written');
  });

  it('to one handler: the other subscribed handler receives nothing and has no delivery rows for those events; nor does its catch-up owe them', async () => {
    await q(sql`UPDATE espf.event_types SET enabled = true WHERE name = 'Account/State'`);
    const s = await startSender(t.db, t.url);
    try {
      const done = await runBackfill(t.db, { rule: 'Account/State', handler: 'Crm', batchSize: 40, resume: false });
      assert.equal(done.events, 300);
      const [b] = await q(sql`SELECT target_handler FROM espf.report_backfills WHERE id = ${done.id}`);
      assert.equal(b.target_handler, 'Crm');
      assert.equal(await count(sql`SELECT count(*) AS n FROM espf.events WHERE event_type = 'Account/State' AND target_handler = 'Crm'`), 300);
      await crm.waitFor(() => crm.received.length >= 300, 60_000, 'the backfill at Crm');
      // A live event after the backfill reaches both: once it is DELIVERED to EventSender,
      // everything committed before it has been routed (the stream is in commit order).
      const [a] = await q(sql`UPDATE billing.account SET blocked = true WHERE id = 'tg-1' RETURNING i_account`);
      await eventually(async () => (await count(sql`SELECT count(*) AS n FROM espf.event_deliveries
        WHERE event_type = 'Account/Blocked' AND state = 'DELIVERED'`)) === 2 || undefined, 30_000, 'the live event delivered to both');
      assert.deepEqual(hss.received.map((r) => r.json.event_type), ['Account/Blocked']);
      assert.equal(hss.received[0]!.json.variables.i_account, Number(a.i_account));
      assert.equal(await count(sql`SELECT count(*) AS n FROM espf.event_deliveries d JOIN espf.events e USING (i_event)
        WHERE d.handler = 'EventSender' AND e.target_handler IS NOT NULL`), 0, 'no delivery row for EventSender');
      assert.equal(await count(sql`SELECT count(*) AS n FROM espf.event_deliveries WHERE handler = 'Crm' AND event_type = 'Account/State' AND state = 'DELIVERED'`), 300);
      assert.equal(crm.received.filter((r) => r.json.event_type === 'Account/State').length, 300, 'each once');
      // A slot made anew would catch up what it did not carry: never the targeted events for EventSender.
      assert.equal(await count(sql`SELECT count(*) AS n FROM espf.catch_up_candidates('main', true) c
        JOIN espf.events e USING (i_event) WHERE c.handler = 'EventSender' AND e.event_type = 'Account/State'`), 0);
    } finally {
      await s.stop();
    }
    // Nor does the shard report count them as waiting for EventSender (the instance seen as 2 shards).
    await q(sql`UPDATE espf.handlers SET shards = 2 WHERE instance = 'main'`);
    try {
      const [w] = await q(sql`SELECT count(*)::int AS shards, sum(waiting_events)::int AS n FROM espf.report_shards WHERE instance = 'main'`);
      assert.deepEqual(w, { shards: 2, n: 0 });
    } finally {
      await q(sql`UPDATE espf.handlers SET shards = 1 WHERE instance = 'main'`);
    }
  });

  it('started right after subscribing a new handler, without waiting: the handler gets every event (the change travels in the stream)', async () => {
    const crm2 = await new TestReceiver().listen();
    // espf run as deployed: a configuration change reaches it at its place in the stream.
    const s = new EspfProcess(t.url);
    try {
      await s.streaming();
      const hssBefore = hss.received.length;
      const crmBefore = crm.received.length;
      await q(sql`INSERT INTO espf.handlers (name, kind) VALUES ('Crm2', 'http')`);
      await q(sql`INSERT INTO espf.http_handlers (handler, url, token_rate, token_burstiness) VALUES ('Crm2', ${[crm2.url]}::text[], 1000000, 1000000)`);
      await q(sql`UPDATE espf.handlers SET enabled = true WHERE name = 'Crm2'`);
      await q(sql`INSERT INTO espf.subscriptions (handler, event_type) VALUES ('Crm2', 'Account/State')`);
      const done = await runBackfill(t.db, { rule: 'Account/State', handler: 'Crm2', where: "id LIKE 'tg-%'", batchSize: 10, resume: false });
      assert.equal(done.events, 300);
      await crm2.waitFor(() => crm2.received.length >= 300, 60_000, 'every event at Crm2');
      await eventually(async () => (await count(sql`SELECT count(*) AS n FROM espf.event_deliveries WHERE handler = 'Crm2' AND state = 'DELIVERED'`)) === 300 || undefined,
        30_000, '300 DELIVERED rows for Crm2');
      assert.equal(hss.received.length, hssBefore);
      assert.equal(crm.received.length, crmBefore);
    } finally {
      await s.stop();
      await crm2.close();
    }
  });

  it('--resume keeps the target and refuses options that differ from the stored ones, in one line', async () => {
    await q(sql`UPDATE espf.event_types SET enabled = false WHERE name = 'Account/State'`);
    await addAccounts(t.db, ids, 100, 'rs-');
    await q(sql`UPDATE espf.event_types SET enabled = true WHERE name = 'Account/State'`);
    const where = "id LIKE 'rs-%'";
    let batches = 0;
    await assert.rejects(runBackfill(t.db, { rule: 'Account/State', handler: 'Crm', where, batchSize: 30, resume: false, stopRequested: () => batches++ >= 1 }),
      /interrupted at key/);
    const [b] = await q(sql`SELECT id, state, rows_done::int, target_handler FROM espf.backfills WHERE where_sql = ${where}`);
    assert.deepEqual({ state: b.state, rows_done: b.rows_done, target_handler: b.target_handler }, { state: 'interrupted', rows_done: 30, target_handler: 'Crm' });
    const stored = `--handler Crm --where 'id LIKE '\\''rs-%'\\''' --batch-size 30`;
    const differing: [string[], string][] = [
      [['--where', "id LIKE 'x-%'"], `--where 'id LIKE '\\''x-%'\\'''`],
      [['--handler', 'EventSender'], '--handler EventSender'],
      [['--all-handlers'], '--all-handlers'],
      [['--batch-size', '31'], '--batch-size 31'],
    ];
    for (const [args, shown] of differing) {
      const r = await runEspf(['backfill', 'Account/State', '--resume', ...args], env());
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stderr, `espf: backfill ${b.id} of rule 'Account/State' runs with ${stored}, not ${shown}: resume it without options, or with the same ones\n`);
    }
    const [after] = await q(sql`SELECT state, rows_done::int FROM espf.backfills WHERE id = ${b.id}`);
    assert.deepEqual(after, { state: 'interrupted', rows_done: 30 }, 'the refusals changed nothing');
    // The same options again are accepted; then everything it wrote is for Crm.
    const r = await runEspf(['backfill', 'Account/State', '--resume', '--handler', 'Crm', '--where', where], env());
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`backfill ${b.id} Account/State: done, 100 rows, 100 events`));
    assert.deepEqual(await q(sql`SELECT e.target_handler, count(*)::int AS n FROM espf.events e JOIN billing.account a ON a.i_account = (e.variables ->> 'i_account')::bigint
      WHERE e.event_type = 'Account/State' AND a.id LIKE 'rs-%' GROUP BY 1`), [{ target_handler: 'Crm', n: 100 }]);
  });

  it('a customer-level backfill fanned out by a dispatcher keeps its target', async () => {
    // A blocked customer (blocked while its type was off) with 5 accounts.
    await q(sql`UPDATE espf.event_types SET enabled = false WHERE name = 'Account/State'`);
    const cust = await seedCustomer(t.db, { name: 'Fan' });
    const accounts = await addAccounts(t.db, cust, 5, 'fan-');
    await q(sql`UPDATE billing.customer SET blocked = true WHERE i_customer = ${cust.i_customer}`);
    await q(sql`UPDATE espf.event_types SET enabled = true WHERE name IN ('Customer/Blocked', 'Account/Blocked')`);
    await q(sql`INSERT INTO espf.subscriptions (handler, event_type) VALUES ('CustomerToAccountsDispatcher', 'Customer/Blocked')`);
    await q(sql`UPDATE espf.handlers SET enabled = true WHERE name = 'CustomerToAccountsDispatcher'`);
    const hssBefore = hss.received.length;
    const crmBefore = crm.received.length;
    const s = await startSender(t.db, t.url);
    try {
      // Crm is not subscribed to Customer/Blocked, but the dispatcher is: accepted.
      const r = await runEspf(['backfill', 'Customer/Blocked', '--handler', 'Crm', '--where', `i_customer = ${cust.i_customer}`], env());
      assert.equal(r.code, 0, r.stderr);
      const [src] = await q(sql`SELECT i_event, target_handler FROM espf.events WHERE event_type = 'Customer/Blocked'`);
      assert.equal(src.target_handler, 'Crm');
      // (Crm also gets the 100 events of the resumed backfill above, which the slot kept.)
      const fanned = () => crm.received.slice(crmBefore).filter((x) => x.json.event_type === 'Account/Blocked');
      await crm.waitFor(() => fanned().length >= 5, 30_000, 'the fanned-out events at Crm');
      const got = fanned().map((x) => ({ type: x.json.event_type, account: Number(x.json.variables.i_account), source: Number(x.json.variables.source_i_event) }));
      assert.deepEqual(got.sort((x, y) => x.account - y.account),
        accounts.map((a) => ({ type: 'Account/Blocked', account: Number(a), source: Number(src.i_event) })));
      assert.deepEqual(await q(sql`SELECT target_handler, count(*)::int AS n FROM espf.events WHERE source_i_event = ${src.i_event} GROUP BY 1`),
        [{ target_handler: 'Crm', n: 5 }]);
      // A live event after it, to both: once EventSender has it, the fan-out was routed before.
      await q(sql`UPDATE billing.account SET blocked = true WHERE id = 'tg-2'`);
      await hss.waitFor(() => hss.received.length > hssBefore, 30_000, 'the live event at EventSender');
      await eventually(async () => (await count(sql`SELECT count(*) AS n FROM espf.event_deliveries d JOIN espf.events e USING (i_event)
        WHERE e.source_i_event = ${src.i_event} AND d.state = 'DELIVERED'`)) === 5 || undefined, 30_000, 'the fan-out recorded');
      const [tg2] = await q(sql`SELECT i_account FROM billing.account WHERE id = 'tg-2'`);
      assert.deepEqual(hss.received.slice(hssBefore).map((x) => x.json.variables.i_account), [Number(tg2.i_account)]);
      assert.equal(await count(sql`SELECT count(*) AS n FROM espf.event_deliveries d JOIN espf.events e USING (i_event)
        WHERE e.source_i_event = ${src.i_event} AND d.handler = 'EventSender'`), 0, 'no row for EventSender');
      const [d] = await q(sql`SELECT state FROM espf.event_deliveries WHERE i_event = ${src.i_event} AND handler = 'CustomerToAccountsDispatcher'`);
      assert.equal(d.state, 'DISPATCHED');
    } finally {
      await s.stop();
    }
  });
});

describe('espf backfill --handler: upgrade from the previous release (migrations/0017_backfill_target.sql)', function () {
  it('keeps events, deliveries and an unfinished backfill, which resumes to every handler; rewrites no table', async function () {
    this.timeout(90_000);
    const old = await databaseAtPreviousRelease('0017_backfill_target.sql');
    if (!old) this.skip(); // not a git checkout
    const { db } = old!;
    try {
      // A backfill the previous release left interrupted, over accounts that exist.
      const { id: bfId, events, deliveries, files, filesBefore: before } = await seedUnfinishedBackfill(db);
      const r = await migrate(db);
      assert.ok(r.applied.includes('0017_backfill_target.sql'), `applied ${r.applied.join(', ')}`);
      assert.deepEqual(await files(), before, 'no table rewritten');
      assert.deepEqual(await db.query(sql`SELECT to_jsonb(e) - 'target_handler' AS e FROM espf.events e ORDER BY i_event`), events);
      // (A previous release older than migrations/0015_request_steps.sql has no step columns.)
      assert.deepEqual(await db.query(sql`SELECT to_jsonb(d) - 'steps_done' - 'step_answers' AS d FROM espf.event_deliveries d ORDER BY i_event`), deliveries);
      const [n] = await db.query(sql`SELECT count(*)::int AS n FROM espf.events WHERE target_handler IS NOT NULL`);
      assert.equal(n.n, 0);
      // The old backfill resumes as it was started: to every handler (no --handler stored).
      await assert.rejects(runBackfill(db, { rule: 'Account/New', resume: true, handler: 'EventSender' }), /runs with --all-handlers --batch-size 10, not --handler EventSender/);
      const done = await runBackfill(db, { rule: 'Account/New', resume: true });
      assert.equal(done.id, bfId);
      assert.equal(done.events, 20);
      const [w] = await db.query(sql`SELECT count(*)::int AS n FROM espf.events WHERE event_type = 'Account/New' AND target_handler IS NULL`);
      assert.equal(w.n, 20);
      assert.deepEqual((await migrate(db)).applied, [], 'a second migrate applies nothing');
    } finally {
      await old!.dispose();
    }
  });
});

describe('espf backfill: a batch that waits for a billing write', function () {
  this.timeout(60_000);
  let t: TestDatabase;
  before(async () => { t = await createTestDatabase(); });
  after(async () => { await t?.drop(); });

  it('emits the row as that write left it (the read comes after the lock, not from the snapshot before the wait)', async () => {
    const ids = await seedCustomer(t.db);
    await t.db.query(sql`INSERT INTO espf.event_types (name, enabled) VALUES ('Account/State', true)`);
    await t.db.query(sql`INSERT INTO espf.event_rules (name, event_type, source, operations, variables, i_env)
      VALUES ('Account/State', 'Account/State', 'billing.account', '{INSERT}',
              'jsonb_build_object(''i_account'', NEW.i_account, ''blocked'', NEW.blocked)', 'NEW.i_env')`);
    await t.db.query(sql`UPDATE espf.event_types SET enabled = false WHERE name = 'Account/State'`);
    const [a] = await addAccounts(t.db, ids, 1, 'race-');
    await t.db.query(sql`UPDATE espf.event_types SET enabled = true WHERE name = 'Account/State'`);
    let backfill: Promise<unknown> | undefined;
    // A billing transaction blocks the account and holds the row while the batch starts and waits for it.
    await t.db.tx(async (tx) => {
      await tx.query(sql`UPDATE billing.account SET blocked = true WHERE i_account = ${a}`);
      backfill = runBackfill(t.db, { rule: 'Account/State', allHandlers: true, resume: false });
      await eventually(async () => {
        const [w] = await t.db.query(sql`SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%backfill_batch%'`);
        return w.n === 1 || undefined;
      }, 20_000, 'the batch to wait for the row');
    });
    await backfill;
    const snapshots = await t.db.query(sql`SELECT variables FROM espf.events WHERE event_type = 'Account/State'`);
    assert.equal(snapshots.length, 1);
    assert.equal(snapshots[0].variables.blocked, true, 'the snapshot carries the committed write it waited for');
  });
});
