// Shards: instance main split into three shards, one `espf run --shard K`
// process each, under a steady load of account changes; one shard is killed
// with SIGKILL and started again. Every event reaches the receiver, no event is
// sent by two shards (provisioning.log of each process against the event's
// shard_key), the events of each account come in commit order, and each shard
// reports its own metrics, status and backlog.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { sql } from '@databases/pg';
import { connect } from '../src/db/connect.ts';
import { migrate } from '../src/migrate/migrate.ts';
import { EspfProcess } from './support/child.ts';
import { espf } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { deliveryFixture, type DeliveryFixture } from './support/fixture.ts';
import { eventually, type TestReceiver } from './support/receiver.ts';
import { addAccounts, seedCustomer } from './support/sender.ts';
import { previousRelease } from './support/upgrade.ts';

const N = 3;
const TYPES = ['Account/New', 'Account/Blocked', 'Account/Unblocked'];

function shardProcess(f: DeliveryFixture, k: number): EspfProcess {
  return f.spawn({ args: ['--shard', String(k)] });
}

/** i_event → how many attempts, from a process's provisioning.log (in its log directory). */
function attemptsIn(p: { logDir: string }): Map<number, number> {
  const m = new Map<number, number>();
  let text = '';
  try { text = readFileSync(path.join(p.logDir, 'provisioning.log'), 'utf8'); } catch { /* nothing written */ }
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const i = Number(JSON.parse(line).i_event);
    m.set(i, (m.get(i) ?? 0) + 1);
  }
  return m;
}

function httpPort(p: EspfProcess): number {
  const m = /on 127\.0\.0\.1:(\d+)/.exec(p.output);
  assert.ok(m, `no http port in the output:\n${p.output}`);
  return Number(m[1]);
}

/**
 * Billing writes until stopped: each transaction toggles `blocked` on a third of
 * the accounts (Blocked, then Unblocked, … per account). stop() resolves to the
 * number of transactions.
 */
function billingLoad(t: TestDatabase, accounts: readonly number[], pauseMs: number): { stop(): Promise<number> } {
  let stopped = false;
  let rounds = 0;
  const writer = (async () => {
    while (!stopped) {
      const some = accounts.filter((_, i) => i % 3 === rounds % 3);
      await t.db.query(sql`UPDATE billing.account SET blocked = NOT blocked WHERE i_account = ANY(${some}::bigint[])`);
      rounds++;
      await new Promise((r) => setTimeout(r, pauseMs));
    }
  })();
  return { stop: async () => { stopped = true; await writer; return rounds; } };
}

/** Per-account order at the receiver: the first arrivals of each account's events come in i_event (commit) order. */
function assertAccountOrder(received: TestReceiver['received']): void {
  const seen = new Set<number>();
  const last = new Map<number, number>();
  for (const r of received) {
    const i = Number(r.json.variables.i_event);
    if (seen.has(i)) continue;
    seen.add(i);
    const a = Number(r.json.variables.i_account);
    assert.ok((last.get(a) ?? 0) < i, `account ${a}: event ${i} arrived after event ${last.get(a)}`);
    last.set(a, i);
  }
}

/** A test database whose instance main is split into `n` shards, a receiver, and the senders and processes a test starts (stopped after). */
function splitInstance(n: number): DeliveryFixture {
  return deliveryFixture({
    types: TYPES,
    seed: false,
    sender: false,
    setup: async ({ t }) => { await t.db.query(sql`UPDATE espf.handlers SET shards = ${n} WHERE instance = 'main'`); },
  });
}

describe('shards: one instance split by account across three processes', function () {
  this.timeout(180_000);
  const f = splitInstance(N);
  let t: TestDatabase;
  let rx: TestReceiver;
  const procs: EspfProcess[][] = [[], [], []]; // every process each shard had, in order
  before(() => { ({ t, rx } = f); });

  it('espf run refuses a missing or out-of-range --shard in one line', async () => {
    for (const [args, msg] of [
      [[], /instance main is split into 3 shards \(espf\.handlers\.shards\): start one process per shard/],
      [['--shard', '3'], /--shard 3: instance main has 3 shards, numbered 0 … 2/],
      [['--shard', 'x'], /--shard 'x': a shard number/],
    ] as const) {
      const r = await espf(['run', '--instance', 'main', ...args], { DATABASE_URL: t.url, ESPF_HTTP_PORT: '0' });
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, msg);
    }
  });

  it('every event delivered, none by two shards, per-account order; a shard killed with SIGKILL and restarted goes on', async () => {
    for (let k = 0; k < N; k++) procs[k]!.push(shardProcess(f, k));
    await Promise.all(procs.map((l) => l[0]!.streaming(60_000))); // three starts from source at once: slow on a loaded machine
    for (let k = 0; k < N; k++) assert.match(procs[k]![0]!.output, new RegExp(`shard ${k} of 3 streaming slot espf_main_${k}of3`));

    const ids = await seedCustomer(t.db);
    const accounts = await addAccounts(t.db, ids, 60, 'shard-');
    const load = billingLoad(t, accounts, 20);
    await rx.waitFor(() => rx.received.length >= 150, 60_000, "150 deliveries before the kill");
    procs[1]![0]!.kill('SIGKILL');
    await procs[1]![0]!.exited();
    // Events for shard 1 pile up in its slot meanwhile.
    const [{ last }] = await t.db.query(sql`SELECT coalesce(max(i_event), 0) AS last FROM espf.events`);
    await eventually(async () => (await t.db.query(sql`SELECT 1 FROM espf.events
      WHERE i_event > ${last} AND event_type = ANY(${TYPES}::text[]) AND shard_key % ${N} = 1 LIMIT 1`)).length === 1, 15_000, 'events for shard 1 while it is down');
    procs[1]!.push(shardProcess(f, 1));
    await procs[1]![1]!.streaming(60_000);
    const atRestart = rx.received.length;
    await rx.waitFor(() => rx.received.length >= atRestart + 150, 60_000, "150 deliveries after the restart");
    const rounds = await load.stop();

    const events: { i_event: number; shard: number; i_account: number }[] = await t.db.query(sql`
      SELECT i_event, shard_key % ${N} AS shard, (variables ->> 'i_account')::bigint AS i_account
        FROM espf.events WHERE event_type = ANY(${TYPES}::text[]) ORDER BY i_event`);
    const got = () => new Set(rx.received.map((r) => Number(r.json.variables.i_event)));
    await rx.waitFor(() => { const g = got(); return events.every((e) => g.has(Number(e.i_event))); }, 60_000, `all ${events.length} events at the receiver`);
    await eventually(async () => {
      const [r] = await t.db.query(sql`
        SELECT count(*)::int AS n FROM espf.events e WHERE event_type = ANY(${TYPES}::text[])
           AND NOT EXISTS (SELECT FROM espf.event_deliveries d WHERE d.i_event = e.i_event AND d.handler = 'EventSender' AND d.state = 'DELIVERED')`);
      return r.n === 0;
    }, 30_000, 'every event DELIVERED');

    // No event sent by two shards: each process sent only events of its shard.
    const shardOf = new Map(events.map((e) => [Number(e.i_event), Number(e.shard)]));
    const perShard = [0, 0, 0];
    for (let k = 0; k < N; k++) {
      for (const p of procs[k]!) {
        for (const i of attemptsIn(p).keys()) {
          assert.equal(shardOf.get(i), k, `event ${i} (shard ${shardOf.get(i)}) was sent by shard ${k}`);
          perShard[k]!++;
        }
      }
    }
    assert.ok(perShard.every((n) => n > 0), `every shard sent events: ${perShard.join(', ')}`);

    assertAccountOrder(rx.received);
    const duplicates = rx.received.length - new Set(rx.received.map((r) => Number(r.json.variables.i_event))).size;
    process.stderr.write(`# shards: ${events.length} events in ${rounds} transactions, per shard ${perShard.join('/')} attempts, ${duplicates} sent again after the SIGKILL\n`);

    // Each shard has its own metrics labels.
    const text = await (await fetch(`http://127.0.0.1:${httpPort(procs[2]![0]!)}/metrics`)).text();
    assert.match(text, /espf_streaming\{shard="2",shards="3"\} 1/);
  });

  it('espf status and espf.report_shards show each shard; a stopped shard is reported with what waits for it', async () => {
    await procs[0]![0]!.stop();
    const ids = await seedCustomer(t.db, { name: 'later' });
    const later = await addAccounts(t.db, ids, 30, 'later-');
    const [{ n: waitingForShard0 }] = await t.db.query(sql`
      SELECT count(*)::int AS n FROM espf.events WHERE event_type = 'Account/New' AND shard_key % ${N} = 0
         AND (variables ->> 'i_account')::bigint = ANY(${later}::bigint[])`);
    assert.ok(waitingForShard0 > 0);
    const rows = await eventually(async () => {
      const r: { shard: number; streaming: boolean; waiting_events: number }[] = await t.db.query(sql`
        SELECT shard, streaming, waiting_events FROM espf.report_shards WHERE instance = 'main' ORDER BY shard`);
      return r.length === N && r[0]!.waiting_events >= waitingForShard0 && r[1]!.streaming && r[2]!.streaming ? r : undefined;
    }, 20_000, 'report_shards: shard 0 stopped with its waiting events, 1 and 2 streaming');
    assert.equal(rows[0]!.streaming, false);
    assert.equal(rows[0]!.waiting_events, waitingForShard0);
    const st = await espf(['status'], { DATABASE_URL: t.url });
    assert.equal(st.code, 0, st.stderr);
    assert.match(st.stdout, new RegExp(`main 0 of 3\\s+not streaming\\s+${waitingForShard0} waiting`));
    assert.match(st.stdout, /main 1 of 3\s+streaming/);
  });
});

describe('shards: the catch-up at start is per shard', function () {
  this.timeout(120_000);
  const f = splitInstance(2);

  const shardEvents = async (k: number) => (await f.t.db.query(sql`
    SELECT i_event FROM espf.events e WHERE event_type = ANY(${TYPES}::text[]) AND espf.in_shard(e, ${k}, 2) ORDER BY i_event`)).map((r) => Number(r.i_event));
  const receivedOnce = () => {
    const n = new Map<number, number>();
    for (const r of f.rx.received) n.set(Number(r.json.variables.i_event), (n.get(Number(r.json.variables.i_event)) ?? 0) + 1);
    return n;
  };

  it('a shard that starts later, and one whose slot was lost, catch up their own events only, however far the other shard has gone', async () => {
    const { t, rx } = f;
    const ids = await seedCustomer(t.db);
    await addAccounts(t.db, ids, 40, 'early-');            // before any shard ran
    const s0 = await f.startSender({ shard: { k: 0, n: 2 } });
    const mine0 = await shardEvents(0);
    const other = await shardEvents(1);
    assert.ok(mine0.length > 0 && other.length > 0, `both shards have accounts: ${mine0.length} + ${other.length}`);
    await rx.waitFor(() => mine0.every((i) => receivedOnce().has(i)), 30_000, 'shard 0 caught up its events');
    await addAccounts(t.db, ids, 20, 'while-0-');          // streamed by shard 0 (its half), waiting for shard 1 (the other)
    // Shard 0 has processed far ahead: that must not move shard 1's catch-up start.
    await eventually(async () => (await t.db.query(sql`SELECT 1 FROM espf.shard_progress WHERE instance = 'main' AND shard = 0 AND shards = 2 AND processed_until IS NOT NULL`)).length === 1,
      15_000, 'shard 0 recorded how far it processed');
    await t.db.query(sql`UPDATE espf.shard_progress SET processed_until = now() + interval '1 hour' WHERE shard = 0`);
    assert.deepEqual([...attemptsIn(s0).keys()].filter((i) => !mine0.includes(i) && other.includes(i)), [], 'shard 0 sent nothing of shard 1');

    const s1 = await f.startSender({ shard: { k: 1, n: 2 } });
    const all = async () => [...await shardEvents(0), ...await shardEvents(1)];
    const before = await all();
    await rx.waitFor(() => before.every((i) => receivedOnce().has(i)), 30_000, 'every event once shard 1 ran');

    // Shard 1's slot is lost (a failover to a standby without it): stopped, slot dropped, events meanwhile.
    await s1.stop();
    await t.db.query(sql`SELECT pg_drop_replication_slot('espf_main_1of2')`);
    await addAccounts(t.db, ids, 20, 'no-slot-');
    const s1b = await f.startSender({ shard: { k: 1, n: 2 } });
    const after = await all();
    await rx.waitFor(() => after.every((i) => receivedOnce().has(i)), 30_000, 'every event after the slot was made again');

    const events0 = new Set(await shardEvents(0));
    const events1 = new Set(await shardEvents(1));
    for (const [run, mine, k] of [[s0, events0, 0], [s1, events1, 1], [s1b, events1, 1]] as const) {
      for (const i of attemptsIn(run).keys()) assert.ok(mine.has(i), `event ${i} sent by shard ${k}, not its shard`);
    }
    const twice = [...receivedOnce()].filter(([, n]) => n > 1).map(([i]) => i);
    assert.deepEqual(twice, [], 'nothing sent twice');
    assert.equal(receivedOnce().size, events0.size + events1.size);
  });
});

describe('shards: changing the number of shards under load (2 → 3): espf shards plan, then switch', function () {
  this.timeout(180_000);
  const f = splitInstance(2);

  it('every event delivered, none sent by two shards (old or new), per-account order at the receiver', async () => {
    const { t, rx } = f;
    const env = { DATABASE_URL: t.url };
    const old = [0, 1].map((k) => f.startSender({ shard: { k, n: 2 } }));
    const olds = await Promise.all(old);
    const ids = await seedCustomer(t.db);
    const accounts = await addAccounts(t.db, ids, 30, 'resize-');
    const load = billingLoad(t, accounts, 15);
    await rx.waitFor(() => rx.received.length >= 100, 60_000, '100 deliveries by the two old shards');

    // Bad input changes nothing, in one line.
    const refusals = [
      [['shards', 'plan', 'main', '0'], 2, /number of shards '0': a whole number from 1 to 64/],
      [['shards', 'plan', 'main', '2'], 1, /instance main has 2 shards already/],
      [['shards', 'plan', 'nobody', '2'], 1, /instance nobody: no handler is served by it/],
      [['shards', 'switch', 'main'], 1, /instance main: no change of the number of shards is planned/],
    ] as const;
    const refused = await Promise.all(refusals.map(([args]) => espf(args, env)));
    refusals.forEach(([args, code, msg], i) => {
      const r = refused[i]!;
      assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, msg);
    });
    assert.deepEqual(await t.db.query(sql`SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'espf_main_%of3'`), [], 'no slot made by a refused plan');
    // A slot of a new shard left from an earlier run would replay old events: refused.
    await t.db.query(sql`SELECT pg_create_logical_replication_slot('espf_main_1of3', 'pgoutput')`);
    const stale = await espf(['shards', 'plan', 'main', '3'], env);
    assert.equal(stale.code, 1, stale.stdout);
    assert.match(stale.stderr, /^espf: instance main: slot espf_main_1of3 exists already, left from an earlier run: drop it/);
    assert.deepEqual((await t.db.query(sql`SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'espf_main_%of3'`)).map((r) => r.slot_name), ['espf_main_1of3']);
    await t.db.query(sql`SELECT pg_drop_replication_slot('espf_main_1of3')`);


    const plan = await espf(['shards', 'plan', 'main', '3'], env);
    assert.equal(plan.code, 0, plan.stderr);
    const lsn = /switch position ([0-9A-F]+\/[0-9A-F]+)/.exec(plan.stdout)?.[1];
    assert.ok(lsn, plan.stdout);
    assert.match(plan.stdout, /slots made: espf_main_0of3, espf_main_1of3, espf_main_2of3/);

    // The old shards still stream: the switch refuses (not drained yet, or still streaming), and changes nothing.
    const early = await espf(['shards', 'switch', 'main'], env);
    assert.equal(early.code, 1, early.stdout);
    assert.match(early.stderr, /instance main shard \d of 2: (processed up to .*, not yet the switch position|passed the switch position and still streams)/);
    assert.equal(early.stderr.trim().split('\n').length, 1, early.stderr);
    const [{ n: still }] = await t.db.query(sql`SELECT max(shards)::int AS n FROM espf.handlers WHERE instance = 'main'`);
    assert.equal(still, 2);

    // Let them pass the switch position, stop them, switch.
    await eventually(async () => (await t.db.query(sql`
      SELECT count(*)::int AS n FROM pg_replication_slots WHERE slot_name IN ('espf_main_0of2', 'espf_main_1of2') AND confirmed_flush_lsn >= ${lsn}::pg_lsn`))[0].n === 2,
      30_000, 'both old shards past the switch position');
    for (const r of olds) await r.stop();
    const sw = await espf(['shards', 'switch', 'main'], env);
    assert.equal(sw.code, 0, sw.stderr);
    assert.match(sw.stdout, /instance main: 3 shards from now on \(was 2\); dropped espf_main_0of2, espf_main_1of2/);
    assert.deepEqual((await t.db.query(sql`SELECT DISTINCT shards FROM espf.handlers WHERE instance = 'main'`)).map((r) => r.shards), [3]);

    const news = await Promise.all([0, 1, 2].map((k) => f.startSender({ shard: { k, n: 3 } })));
    const atSwitch = rx.received.length;
    await rx.waitFor(() => rx.received.length >= atSwitch + 100, 60_000, '100 deliveries by the three new shards');
    const rounds = await load.stop();

    const events: { i_event: number; shard_key: number; i_account: number }[] = await t.db.query(sql`
      SELECT i_event, coalesce(shard_key, espf.shard_key(variables, i_event)) AS shard_key FROM espf.events
       WHERE event_type = ANY(${TYPES}::text[]) ORDER BY i_event`);
    const got = () => new Set(rx.received.map((r) => Number(r.json.variables.i_event)));
    await rx.waitFor(() => { const g = got(); return events.every((e) => g.has(Number(e.i_event))); }, 60_000, `all ${events.length} events at the receiver`);

    for (const r of news) await r.stop(); // their provisioning.log written out

    // None sent by two shards: each event's attempts are in one process's log, and that process's shard is the event's.
    const key = new Map(events.map((e) => [Number(e.i_event), Number(e.shard_key)]));
    const sentBy = new Map<number, string>();
    const perProcess: number[] = [];
    for (const [list, n] of [[olds, 2], [news, 3]] as const) {
      list.forEach((run, k) => {
        let count = 0;
        for (const i of attemptsIn(run).keys()) {
          assert.equal(key.get(i)! % n, k, `event ${i} sent by shard ${k} of ${n}, not its shard`);
          assert.ok(!sentBy.has(i), `event ${i} sent by ${sentBy.get(i)} and by shard ${k} of ${n}`);
          sentBy.set(i, `shard ${k} of ${n}`);
          count++;
        }
        perProcess.push(count);
      });
    }
    assert.ok(perProcess.every((c) => c > 0), `every old and new shard sent events: ${perProcess.join(', ')}`);
    assert.equal(sentBy.size, events.length, 'every event sent by exactly one shard');
    assert.equal(rx.received.length, events.length, 'nothing arrived twice');

    assertAccountOrder(rx.received);
    process.stderr.write(`# shards 2 → 3: ${events.length} events in ${rounds} transactions, sent per process (old 0, 1, new 0, 1, 2) ${perProcess.join('/')}\n`);
  });
});

describe('shards: espf.handlers.shards is checked by the database', function () {
  let t: TestDatabase;
  before(async () => { t = await createTestDatabase(); });
  after(async () => { await t?.drop(); });

  it('refuses 0, 65 and handlers of one instance split differently, naming the column; a whole instance may change together', async () => {
    const shardsNow = async () => (await t.db.query(sql`SELECT name, shards FROM espf.handlers ORDER BY name`)).map((r) => `${r.name}=${r.shards}`);
    const before = await shardsNow();
    for (const v of [0, 65]) {
      await assert.rejects(t.db.query(sql`UPDATE espf.handlers SET shards = ${v} WHERE instance = 'main'`),
        (e: Error & { code?: string }) => e.code === '23514' && /^espf\.handlers\.shards: \d+ is not a number of shards \(1 … 64\)$/.test(e.message));
    }
    await assert.rejects(t.db.query(sql`UPDATE espf.handlers SET shards = 2 WHERE name = 'EventSender'`),
      (e: Error & { code?: string }) => e.code === '23514' && /espf\.handlers\.shards: the handlers of instance main must have the same number of shards \(.*EventSender: 2/.test(e.message));
    assert.deepEqual(await shardsNow(), before);
    await t.db.query(sql`UPDATE espf.handlers SET shards = 4 WHERE instance = 'main'`);
    assert.ok((await shardsNow()).every((s) => s.endsWith('=4')));
  });

  it('an event\'s shard_key follows its account (else customer, product, owner, event) and is the same for all of an account\'s events', async () => {
    const keys = await t.db.query(sql`
      SELECT espf.shard_key('{"i_account": 42, "i_customer": 7}', 1) = espf.shard_key('{"i_account": 42}', 2) AS same_account,
             espf.shard_key('{"i_account": 42}', 1) <> espf.shard_key('{"i_account": 43}', 1) AS other_account,
             espf.shard_key('{"i_customer": 7}', 1) = espf.shard_key('{"i_customer": 7, "i_account": null}', 9) AS customer,
             espf.shard_key('{}', 1) <> espf.shard_key('{}', 2) AS by_event,
             espf.shard_key('{"i_account": 42}', 1) BETWEEN 0 AND 2147483647 AS non_negative`);
    assert.deepEqual(keys[0], { same_account: true, other_account: true, customer: true, by_event: true, non_negative: true });
    // The insert trigger computes the same key as espf.shard_key, for every kind of order key.
    const rows = await t.db.query(sql`
      INSERT INTO espf.events (event_type, variables) VALUES
        ('Account/Blocked', '{"i_account": 42, "i_customer": 7}'), ('Customer/Blocked', '{"i_customer": 7}'),
        ('Product/Changed', '{"i_product": 3}'), ('X/Y', '{"owner_type": "subscriber", "owner_id": 9}'),
        ('X/Z', '{"owner_type": 5, "owner_id": 9}'), ('X/W', '{}'), ('X/V', '{"i_account": null, "i_customer": "c1"}')
      RETURNING shard_key = espf.shard_key(variables, i_event) AS same`);
    assert.deepEqual(rows.map((r) => r.same), [true, true, true, true, true, true, true]);
  });
});

describe('shards: a planned change in the database (espf.plan_shards, espf.cancel_shard_change)', function () {
  let t: TestDatabase;
  before(async () => { t = await createTestDatabase(); });
  after(async () => { await t?.drop(); });

  const slots = async () => (await t.db.query(sql`SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'espf_main_%of2' ORDER BY 1`)).map((r) => r.slot_name);
  const refused = (code: string, re: RegExp) => (e: Error & { code?: string }) => e.code === code && re.test(e.message);

  it('a plan needs the new slots; espf shards cancel drops them and forgets the plan; the switch and a second cancel are then refused', async function () {
    this.timeout(60_000);
    await assert.rejects(t.db.query(sql`SELECT espf.plan_shards('main', 2)`),
      refused('55000', /^instance main: the slots of the new shards must exist first \(missing: espf_main_0of2, espf_main_1of2\)/));
    for (const k of [0, 1]) await t.db.query(sql`SELECT pg_create_logical_replication_slot(${`espf_main_${k}of2`}, 'pgoutput')`);
    await assert.rejects(t.db.query(sql`SELECT espf.check_shard_change('main', 2)`),
      refused('55000', /^instance main: slot espf_main_0of2, espf_main_1of2 exists already, left from an earlier run/));
    const [{ lsn }] = await t.db.query(sql`SELECT espf.plan_shards('main', 2)::text AS lsn`);
    assert.match(lsn, /^[0-9A-F]+\/[0-9A-F]+$/);
    const [{ n }] = await t.db.query(sql`SELECT espf.check_shard_change('main', 2) AS n`);
    assert.equal(n, 1, 'planning the same change again is allowed (its slots are its own)');
    const c = await espf(['shards', 'cancel', 'main'], { DATABASE_URL: t.url });
    assert.equal(c.code, 0, c.stderr);
    assert.equal(c.stdout, 'instance main: planned change given up; dropped espf_main_0of2, espf_main_1of2\n');
    assert.deepEqual(await slots(), []);
    assert.deepEqual(await t.db.query(sql`SELECT * FROM espf.shard_changes`), []);
    await assert.rejects(t.db.query(sql`SELECT espf.cancel_shard_change('main')`), refused('55000', /^instance main: no change of the number of shards is planned$/));
    await assert.rejects(t.db.query(sql`SELECT espf.switch_shards('main')`), refused('55000', /^instance main: no change of the number of shards is planned/));
    const [{ shards }] = await t.db.query(sql`SELECT max(shards)::int AS shards FROM espf.handlers WHERE instance = 'main'`);
    assert.equal(shards, 1);
  });
});

describe('shards: the waiting deliveries a shard reads back are its own', function () {
  let t: TestDatabase;
  before(async () => {
    t = await createTestDatabase();
    // 200 waiting deliveries (PENDING, RETRY, some marked requeued) of 40 accounts, in stream order by i_event.
    await t.db.query(sql`INSERT INTO espf.events (i_event, event_type, variables)
                         SELECT g, 'Account/Blocked', jsonb_build_object('i_event', g, 'i_account', g % 40) FROM generate_series(1, 200) g`);
    await t.db.query(sql`INSERT INTO espf.event_deliveries (i_event, handler, state, event_type, order_key, i_account, instance, commit_lsn, requeued)
                         SELECT g, 'EventSender', CASE WHEN g % 3 = 0 THEN 'RETRY' ELSE 'PENDING' END, 'Account/Blocked',
                                'a:' || (g % 40), g % 40, 'main', ('0/' || to_hex(1000 + g))::pg_lsn, g % 4 = 0
                           FROM generate_series(1, 200) g`);
  });
  after(async () => { await t?.drop(); });

  const shardOf = async (k: number) => (await t.db.query(sql`
    SELECT i_event FROM espf.events e WHERE espf.in_shard(e, ${k}, 3) ORDER BY i_event`)).map((r) => Number(r.i_event));

  it('espf.waiting_page, page after page, and espf.last_waiting: only the shard\'s deliveries, in stream order', async () => {
    const all: number[] = [];
    for (let k = 0; k < 3; k++) {
      const read: number[] = [];
      let cursor: { lsn: string | null; i: number } = { lsn: null, i: 0 };
      for (;;) {
        const page = await t.db.query(sql`SELECT i_event, commit_lsn FROM espf.waiting_page('EventSender', ${cursor.lsn}::pg_lsn, ${cursor.i}, 7, ${k}, 3)`);
        read.push(...page.map((r) => Number(r.i_event)));
        if (page.length < 7) break;
        cursor = { lsn: page.at(-1).commit_lsn, i: Number(page.at(-1).i_event) };
      }
      const mine = await shardOf(k);
      assert.ok(mine.length > 0 && mine.length < 200, `shard ${k} has part of the accounts: ${mine.length}`);
      assert.deepEqual(read, mine, `shard ${k}: its deliveries, in stream order`);
      const [last] = await t.db.query(sql`SELECT i_event FROM espf.last_waiting('EventSender', ${k}, 3)`);
      assert.equal(Number(last.i_event), mine.at(-1));
      all.push(...read);
    }
    assert.deepEqual(all.sort((x, y) => x - y), Array.from({ length: 200 }, (_, i) => i + 1), 'the shards together read every one once');
    const whole = await t.db.query(sql`SELECT i_event FROM espf.waiting_page('EventSender', NULL, 0, 500)`);
    assert.equal(whole.length, 200, 'not sharded: every one');
  });

  it('espf.take_requeued takes only the shard\'s requeued deliveries', async () => {
    const taken = await t.db.query(sql`SELECT i_event FROM espf.take_requeued(ARRAY['EventSender'], 1000, 1, 3)`);
    const mine = (await shardOf(1)).filter((i) => i % 4 === 0);
    assert.deepEqual(taken.map((r) => Number(r.i_event)).sort((x, y) => x - y), mine);
    const [left] = await t.db.query(sql`SELECT count(*)::int AS n FROM espf.event_deliveries WHERE requeued`);
    assert.equal(left.n, 50 - mine.length, 'the other shards\' marks are kept');
  });
});

describe('shards: the shard_key trigger exists while shards are in use', function () {
  this.timeout(60_000);
  let t: TestDatabase;
  beforeEach(async () => { t = await createTestDatabase(); });
  afterEach(async () => { await t?.drop(); });
  const hasTrigger = async () => (await t.db.query(sql`SELECT espf.has_shard_key_trigger() AS t`))[0].t as boolean;
  const insert = async (i: number) => (await t.db.query(sql`
    INSERT INTO espf.events (i_event, event_type, variables) VALUES (${i}, 'Account/Blocked', jsonb_build_object('i_account', ${i}::bigint))
    RETURNING shard_key`))[0].shard_key as number | null;

  it('no shard: no trigger, shard_key null, in_shard computes it; shards > 1 make it in the same transaction; migrate keeps it', async () => {
    assert.equal(await hasTrigger(), false);
    assert.equal(await insert(1), null);
    const [s] = await t.db.query(sql`SELECT count(*) FILTER (WHERE espf.in_shard(e, 0, 2))::int + count(*) FILTER (WHERE espf.in_shard(e, 1, 2))::int AS n
                                       FROM espf.events e WHERE i_event = 1`);
    assert.equal(s.n, 1, 'a row without shard_key is in exactly one shard');
    // Refused: changes nothing, the trigger included.
    await assert.rejects(t.db.query(sql`UPDATE espf.handlers SET shards = 2 WHERE name = 'EventSender'`), (e: { code?: string }) => e.code === '23514');
    assert.equal(await hasTrigger(), false);
    await t.db.query(sql`UPDATE espf.handlers SET shards = 2 WHERE instance = 'main'`);
    assert.equal(await hasTrigger(), true);
    await insert(2);
    const [k] = await t.db.query(sql`SELECT shard_key = espf.shard_key(variables, i_event) AS same FROM espf.events WHERE i_event = 2`);
    assert.deepEqual(k, { same: true });
    await migrate(t.db);
    assert.equal(await hasTrigger(), true, 'kept by migrate');
    // Back to one shard: kept (only migrations/0026 drops it, once, in a transaction of its own).
    await t.db.query(sql`UPDATE espf.handlers SET shards = 1 WHERE instance = 'main'`);
    await migrate(t.db);
    assert.equal(await hasTrigger(), true);
  });

  it('behind a billing transaction that wrote an event, setting shards gives up after 2 s (55P03) and changes nothing', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => { release = r; });
    let wrote!: () => void;
    const written = new Promise<void>((r) => { wrote = r; });
    const billing = t.db.tx(async (tx) => {
      await tx.query(sql`INSERT INTO espf.events (i_event, event_type, variables) VALUES (7, 'Account/Blocked', '{"i_account": 7}')`);
      wrote();
      await held;
    });
    await written;
    const started = Date.now();
    await assert.rejects(t.db.query(sql`UPDATE espf.handlers SET shards = 2 WHERE instance = 'main'`), (e: { code?: string }) => e.code === '55P03');
    assert.ok(Date.now() - started < 10_000);
    release();
    await billing;
    assert.equal(await hasTrigger(), false);
    const [h] = await t.db.query(sql`SELECT count(*)::int AS n FROM espf.handlers WHERE shards > 1`);
    assert.equal(h.n, 0);
  });

  it('a shard publication makes it first, and migrate keeps it while the publication exists', async () => {
    const [p] = await t.db.query(sql`SELECT espf.shard_publication(1, 2) AS pub`);
    assert.equal(p.pub, 'espf_events_1of2');
    assert.equal(await hasTrigger(), true);
    await migrate(t.db);
    assert.equal(await hasTrigger(), true);
    assert.notEqual(await insert(3), null);
    await t.db.query(sql`DROP PUBLICATION espf_events_1of2`);
  });

  it('upgrade from the release before: dropped where no shard is in use, kept where one is; events keep their keys', async function () {
    const prev = await previousRelease('0026_shard_key_on_demand.sql');
    if (!prev) this.skip(); // not a git checkout
    for (const shards of [1, 2]) {
      const e = await createTestDatabase({ empty: true });
      const db = connect({ connectionString: e.url, poolSize: 2 });
      try {
        await migrate(db, prev!);
        await db.query(sql`UPDATE espf.handlers SET shards = ${shards} WHERE instance = 'main'`);
        await db.query(sql`INSERT INTO espf.events (i_event, event_type, variables) SELECT g, 'Account/Blocked', jsonb_build_object('i_account', g) FROM generate_series(1, 5) g`);
        const before = await db.query(sql`SELECT i_event, shard_key FROM espf.events ORDER BY i_event`);
        assert.ok(before.every((r) => r.shard_key !== null), 'that release keys every event');
        await migrate(db);
        const [h] = await db.query(sql`SELECT espf.has_shard_key_trigger() AS t`);
        assert.equal(h.t, shards > 1, `shards = ${shards}`);
        assert.deepEqual(await db.query(sql`SELECT i_event, shard_key FROM espf.events ORDER BY i_event`), before);
      } finally {
        await db.dispose();
        await e.drop();
      }
    }
  });
});

describe('shards: upgrade from the previous release (migrations/0013_shards.sql)', function () {
  it('keeps events, deliveries and handlers without rewriting the outbox; new events get their shard_key; waiting deliveries are read back in pages, whole and per shard', async function () {
    this.timeout(60_000);
    const prev = await previousRelease('0013_shards.sql', ['015_shards.sql']);
    if (!prev) this.skip(); // not a git checkout
    const e = await createTestDatabase({ empty: true });
    const db = connect({ connectionString: e.url, poolSize: 2 });
    try {
      await migrate(db, prev!);
      await db.query(sql`UPDATE espf.http_handlers SET url = '{http://127.0.0.1:9/x}' WHERE handler = 'EventSender'`);
      await db.query(sql`UPDATE espf.handlers SET enabled = true, instance = 'hss' WHERE name = 'EventSender'`);
      await db.query(sql`INSERT INTO espf.events (i_event, event_type, variables)
                         SELECT g, 'Account/Blocked', jsonb_build_object('i_event', g, 'i_account', g % 10) FROM generate_series(1, 50) g`);
      await db.query(sql`INSERT INTO espf.event_deliveries (i_event, handler, state, event_type, order_key, i_account, instance, commit_lsn, attempts)
                         SELECT g, 'EventSender', CASE WHEN g <= 20 THEN 'DELIVERED' WHEN g <= 30 THEN 'RETRY' ELSE 'PENDING' END,
                                'Account/Blocked', 'a:' || (g % 10), g % 10, 'hss', ('0/' || to_hex(1000 + g))::pg_lsn, CASE WHEN g <= 30 THEN 1 ELSE 0 END
                           FROM generate_series(1, 50) g`);
      const events = await db.query(sql`SELECT to_jsonb(e) AS e FROM espf.events e ORDER BY i_event`);
      const deliveries = await db.query(sql`SELECT to_jsonb(d) AS d FROM espf.event_deliveries d ORDER BY i_event`);
      const r = await migrate(db);
      assert.ok(r.applied.includes('0013_shards.sql'), `applied ${r.applied.join(', ')}`);
      assert.deepEqual(await db.query(sql`SELECT to_jsonb(e) - 'shard_key' - 'target_handler' AS e FROM espf.events e ORDER BY i_event`), events);
      assert.deepEqual(await db.query(sql`SELECT to_jsonb(d) - 'steps_done' - 'step_answers' AS d FROM espf.event_deliveries d ORDER BY i_event`), deliveries);
      // Not rewritten: existing rows keep no shard_key (readers compute it); new rows get it once shards are in use.
      const [k] = await db.query(sql`SELECT count(shard_key)::int AS keyed FROM espf.events`);
      assert.equal(k.keyed, 0);
      await db.query(sql`UPDATE espf.handlers SET shards = 2 WHERE instance = 'hss'`);
      await db.query(sql`INSERT INTO espf.events (i_event, event_type, variables) VALUES (1000, 'Account/Blocked', '{"i_account": 3}')`);
      const [nk] = await db.query(sql`SELECT shard_key = espf.shard_key(variables, i_event) AS ok FROM espf.events WHERE shard_key IS NOT NULL`);
      assert.deepEqual(nk, { ok: true });
      await db.query(sql`UPDATE espf.handlers SET shards = 1 WHERE instance = 'hss'`);
      const [h] = await db.query(sql`SELECT instance, shards, enabled FROM espf.handlers WHERE name = 'EventSender'`);
      assert.deepEqual(h, { instance: 'hss', shards: 1, enabled: true });
      const waiting = await db.query(sql`SELECT i_event FROM espf.waiting_page('EventSender', NULL, 0, 100)`);
      assert.equal(waiting.length, 30);
      const halves = await Promise.all([0, 1].map(async (k) => (await db.query(sql`SELECT i_event FROM espf.waiting_page('EventSender', NULL, 0, 100, ${k}, 2)`)).length));
      assert.ok(halves[0]! > 0 && halves[1]! > 0 && halves[0]! + halves[1]! === 30, `each of 2 shards has part of them: ${halves.join(' + ')}`);
      assert.deepEqual((await migrate(db)).applied, [], 'a second migrate applies nothing');
    } finally {
      await db.dispose();
      await e.drop();
    }
  });
});
