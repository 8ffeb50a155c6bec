// Configuration applied at its commit position (docs/replication.md, "How
// configuration changes reach espf run"): a change travels in the replication
// stream, and the route stage puts it in force before the events that commit
// after it. No test here waits for the sender to read its configuration: the
// event is committed right after the change.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { sql, type Queryable } from '@databases/pg';
import pino from 'pino';
import type { Db } from '../src/db/connect.ts';
import { configVersion } from '../src/db/config.ts';
import { ConfigWatcher } from '../src/config/watch.ts';
import { provisioningLog } from '../src/log/logger.ts';
import { migrate } from '../src/migrate/migrate.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { deliveryFixture } from './support/fixture.ts';
import { eventually, TestReceiver } from './support/receiver.ts';
import { acknowledgedPastNow, configApplied, configureEventSender, seedCustomer, startSender } from './support/sender.ts';
import { releaseBeforeChangeOf, type ReleasedCode } from './support/upgrade.ts';

const TYPES = ['Account/New'];

/** One account (one Account/New event) in its own transaction; its i_account. */
async function newAccount(db: Queryable, ids: { i_product: number; i_customer: number }, id: string): Promise<number> {
  const [a] = await db.query(sql`INSERT INTO billing.account (id, i_customer, i_product) VALUES (${id}, ${ids.i_customer}, ${ids.i_product}) RETURNING i_account`);
  return a.i_account;
}

/** How many requests of each account's Account/New arrived (answered or not). */
function arrivalsByAccount(rx: TestReceiver): Map<number, number> {
  const m = new Map<number, number>();
  for (const r of rx.arrived) {
    if (r.json.event_type !== 'Account/New') continue;
    const a = Number(r.json.variables.i_account);
    m.set(a, (m.get(a) ?? 0) + 1);
  }
  return m;
}

async function deliveryRows(db: Db, accounts: readonly number[]): Promise<number> {
  const [r] = await db.query(sql`SELECT count(*)::int AS n FROM espf.event_deliveries WHERE handler = 'EventSender' AND i_account = ANY(${accounts}::bigint[])`);
  return r.n;
}

describe('configuration in the stream: enable and disable at their commit position', function () {
  this.timeout(180_000);
  const f = deliveryFixture({ types: TYPES });

  it('1,000 switches of EventSender racing event commits on two connections: every event after an enable reaches it, none after a disable', async () => {
    const { db } = f.t;
    // Switches and events take one advisory lock, so their commit order is the
    // order they took it in, and each event notes whether EventSender was enabled
    // when it committed (a statement after the lock sees every commit before it).
    // An event waiting on the lock commits the moment a switch has committed.
    const LOCK = 7201;
    const on: number[] = [];
    const off: number[] = [];
    let switching = true;
    const switcher = (async () => {
      for (let i = 0; i < 1000; i++) {
        await db.tx(async (tx) => {
          await tx.query(sql`SELECT pg_advisory_xact_lock(${LOCK})`);
          await tx.query(sql`UPDATE espf.handlers SET enabled = NOT enabled WHERE name = 'EventSender'`);
        });
      }
      switching = false;
    })();
    const writer = (w: number) => (async () => {
      for (let i = 0; switching; i++) {
        await db.tx(async (tx) => {
          await tx.query(sql`SELECT pg_advisory_xact_lock(${LOCK})`);
          const [a] = await tx.query(sql`
            INSERT INTO billing.account (id, i_customer, i_product)
            VALUES (${`race-${w}-${i}`}, ${f.ids.i_customer}, ${f.ids.i_product})
            RETURNING i_account, (SELECT enabled FROM espf.handlers WHERE name = 'EventSender') AS enabled`);
          (a.enabled ? on : off).push(a.i_account);
        });
      }
    })();
    await Promise.all([switcher, writer(1), writer(2)]);
    // 1,000 switches from enabled: enabled again at the end, so what waits for it is sent.
    const [h] = await db.query(sql`SELECT enabled FROM espf.handlers WHERE name = 'EventSender'`);
    assert.equal(h.enabled, true);
    assert.ok(on.length >= 100 && off.length >= 100, `${on.length} events while enabled, ${off.length} while disabled: the race did not interleave`);

    await f.rx.waitFor(() => { const m = arrivalsByAccount(f.rx); return on.every((a) => m.has(a)); }, 120_000, `all ${on.length} events committed while EventSender was enabled`);
    // Nothing is sent for the others: the slot is acknowledged past them with no delivery row.
    await eventually(async () => (await db.query(sql`
      SELECT confirmed_flush_lsn >= pg_current_wal_insert_lsn() AS ok FROM pg_replication_slots
       WHERE database = current_database()`))[0]?.ok === true || undefined, 60_000, 'the slot acknowledged past every event');
    const m = arrivalsByAccount(f.rx);
    const sentOff = off.filter((a) => m.has(a));
    assert.deepEqual(sentOff, [], `${sentOff.length} of ${off.length} events committed while EventSender was disabled reached it`);
    assert.equal(await deliveryRows(db, off), 0, 'no delivery row for an event committed while disabled');
    assert.equal(await deliveryRows(db, on), on.length, 'one delivery row per event committed while enabled');
    process.stderr.write(`# config race: 1,000 switches, ${on.length} events committed while enabled (all delivered), ${off.length} while disabled (none)\n`);
  });
});

describe('configuration in the stream: subscriptions, settings', function () {
  this.timeout(60_000);
  const f = deliveryFixture({ types: TYPES, each: true });
  let other: TestReceiver;
  beforeEach(async () => { other = await new TestReceiver().listen(); });
  afterEach(async () => { await other.close(); });

  it('subscribe then an event at once: delivered; unsubscribe then an event at once: not', async () => {
    const { db } = f.t;
    await db.query(sql`UPDATE espf.event_types SET enabled = true WHERE name = 'Account/Blocked'`);
    for (let i = 0; i < 20; i++) {
      await db.query(sql`DELETE FROM espf.subscriptions WHERE handler = 'EventSender' AND event_type = 'Account/Blocked'`);
      const off = await newAccount(db, f.ids, `sub-${i}`);
      await db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account = ${off}`);
      await db.query(sql`INSERT INTO espf.subscriptions (handler, event_type) VALUES ('EventSender', 'Account/Blocked')`);
      const on = await newAccount(db, f.ids, `sub-on-${i}`);
      await db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account = ${on}`);
      await f.rx.waitFor(() => f.rx.received.some((r) => r.json.event_type === 'Account/Blocked' && r.json.variables.i_account === on), 15_000, `Account/Blocked of ${on}`);
      assert.equal(f.rx.arrived.filter((r) => r.json.event_type === 'Account/Blocked' && r.json.variables.i_account === off).length, 0,
        `round ${i}: Account/Blocked committed while unsubscribed was sent`);
    }
  });

  it('a URL change then an event at once: the event goes to the new URL', async () => {
    const { db } = f.t;
    for (let i = 0; i < 20; i++) {
      const [to, away] = i % 2 === 0 ? [other, f.rx] : [f.rx, other];
      await db.query(sql`UPDATE espf.http_handlers SET url = ${[to.url]}::text[] WHERE handler = 'EventSender'`);
      const a = await newAccount(db, f.ids, `url-${i}`);
      await to.waitFor(() => to.received.some((r) => r.json.variables.i_account === a), 15_000, `account ${a} at the new URL`);
      assert.equal(away.arrived.filter((r) => r.json.variables.i_account === a).length, 0, `round ${i}: sent to the old URL`);
    }
  });

  it('a change of one environment\'s URL (espf.http_handler_envs) then its event at once: the event goes to the new URL; the default row\'s events stay', async () => {
    const { db } = f.t;
    for (let i = 0; i < 20; i++) {
      const [to, away] = i % 2 === 0 ? [other, f.rx] : [f.rx, other];
      await db.query(sql`INSERT INTO espf.http_handler_envs (handler, i_env, url) VALUES ('EventSender', 2, ${[to.url]}::text[])
                         ON CONFLICT (handler, i_env) DO UPDATE SET url = excluded.url`);
      const [{ i_account: a }] = await db.query(sql`INSERT INTO billing.account (id, i_customer, i_product, i_env)
                                                    VALUES (${`env-url-${i}`}, ${f.ids.i_customer}, ${f.ids.i_product}, 2) RETURNING i_account`);
      const d = await newAccount(db, f.ids, `env-url-default-${i}`);
      await to.waitFor(() => to.received.some((r) => r.json.variables.i_account === a), 15_000, `account ${a} of i_env 2 at the new URL`);
      await f.rx.waitFor(() => f.rx.received.some((r) => r.json.variables.i_account === d), 15_000, `account ${d} at the default URL`);
      assert.equal(away.arrived.filter((r) => r.json.variables.i_account === a).length, 0, `round ${i}: sent to the old URL`);
      assert.equal(other.arrived.filter((r) => r.json.variables.i_account === d).length, 0, `round ${i}: the default row's event moved`);
    }
  });

  it('a change and events in one transaction: the events before the change is noted follow the configuration before it, those after it the new one', async () => {
    const { db } = f.t;
    await db.query(sql`UPDATE espf.handlers SET enabled = false WHERE name = 'EventSender'`);
    const ids = f.ids;
    const [before, after] = await db.tx(async (tx) => {
      const b = await newAccount(tx, ids, 'same-tx-before');
      await tx.query(sql`UPDATE espf.handlers SET enabled = true WHERE name = 'EventSender'`);
      // The change is noted (its message written) here, not at the commit: what follows goes by it.
      await tx.query(sql`SET CONSTRAINTS ALL IMMEDIATE`);
      const a = await newAccount(tx, ids, 'same-tx-after');
      return [b, a];
    });
    // Committed with the enable at its end (the usual case): before it, like the first event above.
    const [atEnd] = await db.tx(async (tx) => {
      await tx.query(sql`UPDATE espf.handlers SET enabled = false WHERE name = 'EventSender'`);
      const e1 = await newAccount(tx, ids, 'same-tx-disable');
      return [e1];
    });
    const last = await newAccount(db, ids, 'same-tx-last');
    await db.query(sql`UPDATE espf.handlers SET enabled = true WHERE name = 'EventSender'`);
    const next = await newAccount(db, ids, 'same-tx-next');
    await f.rx.waitFor(() => [after, atEnd, next].every((a) => f.rx.received.some((r) => r.json.variables.i_account === a)), 15_000, 'the events after each change');
    await acknowledgedPastNow(db, f.run.sender.slot);
    const m = arrivalsByAccount(f.rx);
    assert.equal(m.get(before), undefined, 'the event before the enable in its transaction was sent');
    assert.equal(m.get(last), undefined, 'the event after the disable was sent');
  });

  it('the sender starts from the version it read; a change made while it was stopped is in force for the events after it', async () => {
    const { db } = f.t;
    assert.equal(f.run.sender.configuration.version, await configVersion(db));
    await f.run.stop();
    await db.query(sql`UPDATE espf.http_handlers SET url = ${[other.url]}::text[] WHERE handler = 'EventSender'`);
    const a = await newAccount(db, f.ids, 'stopped-1');
    f.run = await f.startSender();
    await other.waitFor(() => other.received.some((r) => r.json.variables.i_account === a), 15_000, 'the event at the URL set while stopped');
    await configApplied(db, f.run.sender);
    assert.equal(f.run.sender.configuration.handlers.get('EventSender')?.http?.url[0], other.url);
  });
});

describe('configuration in the stream: the version in force', function () {
  const f = deliveryFixture({ types: TYPES, sender: false });

  it('a change the stream replays (not newer than the version in force) is ignored; a newer one is in force', async () => {
    const { db } = f.t;
    const seen: number[] = [];
    const w = new ConfigWatcher({ db, instance: 'main', changed: (c) => seen.push(c.version) });
    await w.read();
    const [now] = await db.query(sql`SELECT version, handlers FROM espf.config_in_force()`);
    const doc = (version: number, enabled: boolean) => Buffer.from(JSON.stringify({
      version, handlers: (now.handlers as { name: string }[]).map((h) => h.name === 'EventSender' ? { ...h, enabled } : h),
    }));
    assert.equal(w.apply(doc(Number(now.version), false)), false, 'the same version again');
    assert.equal(w.apply(doc(Number(now.version) - 1, false)), false, 'an older version');
    assert.equal(w.current.handlers.get('EventSender')?.enabled, true);
    assert.equal(w.apply(doc(Number(now.version) + 1, false)), true, 'a newer version');
    assert.equal(w.current.handlers.get('EventSender')?.enabled, false);
    assert.deepEqual(seen, [Number(now.version), Number(now.version) + 1]);
    // Reading the rows again does not go back to an older version.
    await w.read();
    assert.equal(w.current.version, Number(now.version) + 1);
  });
});

describe('configuration in the stream: a handler moved between two running instances', function () {
  this.timeout(180_000);
  const f = deliveryFixture({ types: TYPES });

  it('moved back and forth while events stream: each event delivered once', async () => {
    const { db } = f.t;
    await f.startSender({ instance: 'other' });
    const accounts: number[] = [];
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) accounts.push(await newAccount(db, f.ids, `move-${i}`));
    })();
    for (let i = 0; i < 20; i++) {
      const seen = f.rx.received.length;
      await db.query(sql`UPDATE espf.handlers SET instance = CASE instance WHEN 'main' THEN 'other' ELSE 'main' END WHERE name = 'EventSender'`);
      // Some events stream before the next move.
      await f.rx.waitFor(() => f.rx.received.length >= seen + 5, 30_000, `deliveries after move ${i + 1}`);
    }
    writing = false;
    await writer;
    await f.rx.waitFor(() => { const m = arrivalsByAccount(f.rx); return accounts.every((a) => m.has(a)); }, 60_000, `all ${accounts.length} events`);
    const twice = [...arrivalsByAccount(f.rx)].filter(([, n]) => n > 1);
    assert.deepEqual(twice, [], 'events sent more than once');
    // The outcomes are recorded in batches, after the requests: wait for the last ones.
    const rows = await eventually(async () => {
      const r = await db.query(sql`SELECT i_event, count(*)::int AS n, min(state) AS state FROM espf.event_deliveries
                                    WHERE handler = 'EventSender' AND i_account = ANY(${accounts}::bigint[]) GROUP BY i_event`);
      return r.length === accounts.length && r.every((x) => x.state === 'DELIVERED') ? r : undefined;
    }, 30_000, `${accounts.length} delivered rows`);
    assert.ok(rows.every((r) => r.n === 1), JSON.stringify(rows.filter((r) => r.n !== 1)));
    // Both instances sent: each took the handler at the move's place in its stream.
    const per = await db.query(sql`SELECT instance, count(*)::int AS n FROM espf.event_deliveries
                                    WHERE handler = 'EventSender' AND i_account = ANY(${accounts}::bigint[]) GROUP BY instance ORDER BY instance`);
    // (How many each sent depends on where the moves fall in the stream: under load
    // most of the deliveries after a move can still be of events before it.)
    assert.deepEqual(per.map((r) => r.instance), ['main', 'other'], JSON.stringify(per));
    assert.ok(per.every((r) => r.n >= 1), JSON.stringify(per));
  });
});

describe('configuration in the stream: every shard process', function () {
  this.timeout(120_000);
  const f = deliveryFixture({
    types: TYPES, sender: false,
    setup: async ({ t }) => {
      await t.db.query(sql`UPDATE espf.handlers SET shards = 2 WHERE instance = 'main'`);
      await t.db.query(sql`UPDATE espf.handlers SET enabled = false WHERE name = 'EventSender'`);
    },
  });

  it('an enable reaches both shards: the events right after it, of either shard, are delivered', async () => {
    const { db } = f.t;
    const shards = await Promise.all([0, 1].map((k) => f.startSender({ shard: { k, n: 2 } })));
    await db.query(sql`UPDATE espf.handlers SET enabled = true WHERE name = 'EventSender'`);
    const accounts: number[] = [];
    for (let i = 0; i < 20; i++) accounts.push(await newAccount(db, f.ids, `shard-${i}`));
    await f.rx.waitFor(() => { const m = arrivalsByAccount(f.rx); return accounts.every((a) => m.has(a)); }, 30_000, 'all 20 events');
    const [{ n }] = await db.query(sql`SELECT count(DISTINCT shard_key % 2)::int AS n FROM espf.events WHERE (variables->>'i_account')::bigint = ANY(${accounts}::bigint[])`);
    assert.equal(n, 2, 'the events fell on both shards');
    const version = await configVersion(db);
    for (const s of shards) assert.equal(s.sender.configuration.version, version);
  });
});

describe('configuration in the stream: upgrade from the previous release (migrations/0020_config_stream.sql)', function () {
  this.timeout(180_000);
  let prev: ReleasedCode | null = null;
  let e: TestDatabase | undefined;
  const rx = new TestReceiver();
  const rx2 = new TestReceiver();
  before(async () => { await rx.listen(); await rx2.listen(); });
  after(async () => {
    await prev?.remove();
    await rx.close();
    await rx2.close();
    await e?.drop();
  });

  it('migrated while the previous release\'s sender streams: its events keep flowing; the new sender applies a change at its commit position', async function () {
    // The release before the migration that brought the stream (its file is never edited; sql/042 is, by later changes).
    prev = await releaseBeforeChangeOf('migrations/0020_config_stream.sql');
    if (!prev) this.skip(); // not a git checkout
    e = await createTestDatabase({ empty: true });
    const { db } = e;
    await prev.migrate(db, { migrations: prev.migrations, repeatable: prev.repeatable });
    const [{ t }] = await db.query(sql`SELECT to_regclass('espf.config_version') AS t`);
    assert.equal(t, null, 'the previous release has no espf.config_version');
    await configureEventSender(db, rx.url, TYPES);
    const ids = await seedCustomer(db);
    // Events and deliveries of that release: 30 events, 20 of them delivered, 10 waiting (its sender sends them).
    await db.query(sql`INSERT INTO espf.events (event_type, variables)
                       SELECT 'Account/Blocked', jsonb_build_object('i_account', 1000000 + g) FROM generate_series(1, 30) g`);
    await db.query(sql`INSERT INTO espf.event_deliveries (i_event, handler, state, event_type, order_key, i_account, instance, commit_lsn, attempts)
                       SELECT i_event, 'EventSender', CASE WHEN row_number() OVER (ORDER BY i_event) <= 20 THEN 'DELIVERED' ELSE 'PENDING' END,
                              event_type, 'a:' || (variables->>'i_account'), (variables->>'i_account')::bigint, 'main', '0/1'::pg_lsn, 1
                         FROM espf.events`);

    // The previous release's sender (its own src/), streaming.
    const { Sender: OldSender } = await import(pathToFileURL(path.join(prev.migrations, '..', 'src', 'run', 'sender.ts')).href) as { Sender: new (o: Record<string, unknown>) => { start(): Promise<void>; stop(): Promise<unknown>; isStreaming: boolean } };
    const logDir = mkdtempSync(path.join(os.tmpdir(), 'espf-log-'));
    const plog = provisioningLog(logDir);
    const old = new OldSender({ db, url: e.url, instance: 'main', log: pino({ level: 'silent' }), plog, configPollMs: 200, heartbeatMs: 500 });
    await old.start();
    await eventually(async () => old.isStreaming, 30_000, 'the previous release\'s sender to stream');
    const first = await newAccount(db, ids, 'upgrade-before');
    await rx.waitFor(() => rx.received.some((r) => r.json.variables.i_account === first), 30_000, 'an event before the upgrade');
    // It sent the 10 waiting deliveries of that release.
    await rx.waitFor(() => rx.received.filter((x) => Number(x.json.variables.i_account) > 1000000).length >= 10, 30_000, 'the 10 waiting deliveries');
    const before = await eventually(async () => {
      const rows = await db.query(sql`SELECT to_jsonb(d) AS d, state FROM espf.event_deliveries d WHERE i_event <= 30 ORDER BY i_event`);
      return rows.every((x) => x.state === 'DELIVERED') ? rows : undefined;
    }, 30_000, 'the 30 deliveries of that release recorded DELIVERED');

    // espf migrate of this release, while that sender streams and events commit.
    let writing = true;
    const during: number[] = [];
    const writer = (async () => { for (let i = 0; writing; i++) during.push(await newAccount(db, ids, `upgrade-during-${i}`)); })();
    const r = await migrate(db);
    writing = false;
    await writer;
    assert.ok(r.applied.includes('0020_config_stream.sql'), `applied ${r.applied.join(', ')}`);
    assert.deepEqual(await db.query(sql`SELECT to_jsonb(d) AS d, state FROM espf.event_deliveries d WHERE i_event <= 30 ORDER BY i_event`), before);
    const after = await newAccount(db, ids, 'upgrade-after');
    await rx.waitFor(() => [...during, after].every((a) => rx.received.some((x) => x.json.variables.i_account === a)), 30_000,
      `the ${during.length + 1} events committed during and after the upgrade, by the previous release's sender`);
    await old.stop();
    await plog.flush();

    // This release's sender: the change and the event right after it.
    const run = await startSender(db, e.url);
    try {
      assert.equal(run.sender.configuration.version, await configVersion(db));
      await db.query(sql`UPDATE espf.http_handlers SET url = ${[rx2.url]}::text[] WHERE handler = 'EventSender'`);
      const moved = await newAccount(db, ids, 'upgrade-new-url');
      await rx2.waitFor(() => rx2.received.some((x) => x.json.variables.i_account === moved), 30_000, 'the event after the change at the new URL');
      assert.equal(rx.arrived.filter((x) => x.json.variables.i_account === moved).length, 0, 'sent to the old URL');
    } finally {
      await run.stop();
    }
  });
});
