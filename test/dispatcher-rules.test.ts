import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql, type SQLQuery } from '@databases/pg';
import type { Db } from '../src/db/connect.ts';
import { migrate } from '../src/migrate/migrate.ts';
import { runEspf, type CliRun } from './support/child.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { deliveryFixture } from './support/fixture.ts';
import { eventually } from './support/receiver.ts';
import { addAccounts, seedCustomer } from './support/sender.ts';
import { databaseAtPreviousRelease } from './support/upgrade.ts';

// Dispatcher rules as rows of espf.dispatcher_rules (sql/200_dispatchers.sql,
// docs/dba.md "espf.dispatcher_rules") on an operator schema that is not
// billing: checked when written, compiled, run by espf.dispatch through
// `espf run`, reported by `espf rule check`, and kept through an upgrade.

/** An operator schema: owners (business customers) and their subscribers. */
const ACME = [
  sql`CREATE SCHEMA acme`,
  sql`CREATE TABLE acme.owner (id text PRIMARY KEY, on_hold boolean NOT NULL DEFAULT false, region int NOT NULL DEFAULT 1)`,
  sql`CREATE TABLE acme.subscriber (msisdn text PRIMARY KEY, owner text NOT NULL REFERENCES acme.owner,
        state text NOT NULL DEFAULT 'active', plan text NOT NULL DEFAULT 'basic', region int NOT NULL DEFAULT 1)`,
  sql`CREATE INDEX ON acme.subscriber (owner)`,
  sql`INSERT INTO espf.event_types (name) VALUES ('Owner/OnHold'), ('Subscriber/OnHold'), ('Subscriber/PlanChanged')`,
  sql`INSERT INTO espf.event_rules (name, event_type, source, operations, watch, condition, variables, i_env) VALUES
        ('acme owner on hold', 'Owner/OnHold', 'acme.owner', '{UPDATE}', '{on_hold}', 'NOT OLD.on_hold AND NEW.on_hold',
         'jsonb_build_object(''owner'', NEW.id)', 'NEW.region'),
        ('acme plan', 'Subscriber/PlanChanged', 'acme.subscriber', '{UPDATE}', '{plan}', 'OLD.plan <> NEW.plan',
         'jsonb_build_object(''i_account'', NEW.msisdn::bigint, ''plan'', NEW.plan)', 'NEW.region')`,
  sql`INSERT INTO espf.handlers (name, kind) VALUES ('AcmeOwnerDispatcher', 'dispatcher')`,
];

/** The rule of docs/own-schema.md's kind: an owner on hold → Subscriber/OnHold for each of its active subscribers. */
const ON_HOLD_QUERY = `SELECT 'Subscriber/OnHold' AS event_type, s.region AS i_env, s.msisdn::bigint AS i_account,
       jsonb_build_object('msisdn', s.msisdn, 'owner', s.owner) AS variables
  FROM acme.subscriber s
 WHERE s.owner = source.variables ->> 'owner' AND s.state = 'active'`;

async function createAcme(db: Db): Promise<void> {
  for (const q of ACME) await db.query(q);
  await db.query(sql`INSERT INTO espf.dispatcher_rules (handler, event_type, query) VALUES ('AcmeOwnerDispatcher', 'Owner/OnHold', ${ON_HOLD_QUERY})`);
}

/** Owner `id` with `n` subscribers 3538700<k>0001…; their i_account (the MSISDN as a number) in order. */
async function addOwner(db: Db, id: string, k: number, n: number, region = 1): Promise<number[]> {
  await db.query(sql`INSERT INTO acme.owner (id, region) VALUES (${id}, ${region})`);
  const rows = await db.query(sql`INSERT INTO acme.subscriber (msisdn, owner, region)
    SELECT (3538700000000 + ${k} * 10000 + g)::text, ${id}, ${region} FROM generate_series(1, ${n}) g RETURNING msisdn::bigint AS i`);
  return rows.map((r) => Number(r.i));
}

const compiledFunctions = async (db: Db) => (await db.query(sql`
  SELECT count(*)::int AS n FROM pg_proc WHERE pronamespace = 'espf'::regnamespace AND proname LIKE 'dispatch\\_%'`))[0].n as number;

describe('dispatcher rules on an operator schema (acme), through espf run', function () {
  this.timeout(120_000);
  const f = deliveryFixture({
    seed: false,
    sender: 'child',
    prepare: async ({ t }) => { await createAcme(t.db); },
    types: ['Subscriber/OnHold', 'Subscriber/PlanChanged'],
    setup: async ({ t }) => {
      await t.db.query(sql`UPDATE espf.event_types SET enabled = true WHERE name = 'Owner/OnHold'`);
      await t.db.query(sql`INSERT INTO espf.subscriptions VALUES ('AcmeOwnerDispatcher', 'Owner/OnHold')`);
      await t.db.query(sql`UPDATE espf.handlers SET enabled = true WHERE name = 'AcmeOwnerDispatcher'`);
    },
  });
  const received = (type: string, owner: string) =>
    f.rx.received.filter((r) => r.json.event_type === type && r.json.variables.owner === owner);

  it('an owner on hold: Subscriber/OnHold for each of its active subscribers, with the rule\'s variables, once', async () => {
    const subs = await addOwner(f.t.db, 'o1', 1, 5, 7);
    await addOwner(f.t.db, 'o2', 2, 3);
    await f.t.db.query(sql`UPDATE acme.subscriber SET state = 'barred' WHERE msisdn = ${String(subs[4])}`);
    await f.t.db.query(sql`UPDATE acme.owner SET on_hold = true WHERE id = 'o1'`);
    await f.rx.waitFor(() => received('Subscriber/OnHold', 'o1').length >= 4, 20_000, 'four Subscriber/OnHold');
    const [src] = await f.t.db.query(sql`SELECT i_event FROM espf.events WHERE event_type = 'Owner/OnHold'`);
    const got = received('Subscriber/OnHold', 'o1').map((r) => {
      const { i_event, event_time, ...vars } = r.json.variables;
      assert.equal(typeof i_event, 'number');
      assert.match(String(event_time), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
      return vars;
    }).sort((a, b) => Number(a.i_account) - Number(b.i_account));
    assert.deepEqual(got, subs.slice(0, 4).map((i) => ({ i_account: i, msisdn: String(i), owner: 'o1', i_env: 7, source_i_event: Number(src.i_event) })));
    const [d] = await f.t.db.query(sql`SELECT state FROM espf.event_deliveries WHERE i_event = ${src.i_event} AND handler = 'AcmeOwnerDispatcher'`);
    assert.equal(d.state, 'DISPATCHED');
    const [c] = await f.t.db.query(sql`SELECT count(*)::int AS n FROM espf.events WHERE source_i_event = ${src.i_event}`);
    assert.equal(c.n, 4, 'the barred subscriber and the other owner\'s get nothing');
    assert.deepEqual(received('Subscriber/OnHold', 'o2'), []);
  });

  it('the dispatch waits for a subscriber\'s open transaction: its events keep commit order and increasing i_event', async () => {
    const subs = await addOwner(f.t.db, 'o3', 3, 3);
    const busy = String(subs[1]);
    // A billing transaction that changed one subscriber (its event has its i_event) and has not committed.
    let release!: () => void;
    const held = new Promise<void>((r) => { release = r; });
    const billing = f.t.db.tx(async (tx) => {
      await tx.query(sql`UPDATE acme.subscriber SET plan = 'gold' WHERE msisdn = ${busy}`);
      await held;
    });
    try {
      await f.t.db.query(sql`UPDATE acme.owner SET on_hold = true WHERE id = 'o3'`);
      // espf.dispatch waits for the subscriber's row lock, before it takes the i_event of its Subscriber/OnHold.
      await eventually(async () => (await f.t.db.query(sql`
        SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%espf.dispatch(%'`)).length > 0,
      20_000, 'espf.dispatch waiting for the subscriber\'s lock');
      assert.deepEqual(received('Subscriber/OnHold', 'o3'), [], 'nothing is produced while it waits');
    } finally {
      release();
      await billing;
    }
    await f.rx.waitFor(() => received('Subscriber/OnHold', 'o3').length >= 3 && f.rx.received.some((r) => r.json.event_type === 'Subscriber/PlanChanged'),
      20_000, 'the plan change and three Subscriber/OnHold');
    const ofBusy = f.rx.received.filter((r) => r.json.variables.i_account === Number(busy));
    assert.deepEqual(ofBusy.map((r) => r.json.event_type), ['Subscriber/PlanChanged', 'Subscriber/OnHold'], 'commit order');
    assert.ok(Number(ofBusy[0]!.json.variables.i_event) < Number(ofBusy[1]!.json.variables.i_event), 'i_event follows commit order');
  });
});

describe('dispatcher rules: checked when written', () => {
  let t: TestDatabase;
  before(async () => {
    t = await createTestDatabase();
    await createAcme(t.db);
  });
  after(async () => { await t.drop(); });

  const RULE = 'AcmeOwnerDispatcher: Owner/OnHold';
  /** The insert (or update) is refused with one line naming the rule, with `code`, and changes nothing. */
  async function refused(write: SQLQuery, code: string, reason: RegExp): Promise<void> {
    const before = await t.db.query(sql`SELECT handler, event_type, query FROM espf.dispatcher_rules ORDER BY 1, 2`);
    const functions = await compiledFunctions(t.db);
    await assert.rejects(t.db.query(write), (err: Error & { code?: string }) => {
      assert.equal(err.code, code, err.message);
      assert.match(err.message, /^espf\.dispatcher_rules: rule "[^"]+": (query|handler|event_type): [^\n]+$/);
      assert.match(err.message, reason);
      return true;
    });
    assert.deepEqual(await t.db.query(sql`SELECT handler, event_type, query FROM espf.dispatcher_rules ORDER BY 1, 2`), before, 'no row changed');
    assert.equal(await compiledFunctions(t.db), functions, 'no function made or dropped');
  }
  const setQuery = (q: string) => sql`UPDATE espf.dispatcher_rules SET query = ${q} WHERE handler = 'AcmeOwnerDispatcher'`;

  it('a good rule is compiled into its function', async () => {
    const [r] = await t.db.query(sql`SELECT to_regprocedure(format('espf.%I(bigint[])', espf.dispatcher_function_name('AcmeOwnerDispatcher', 'Owner/OnHold'))) IS NOT NULL AS ok`);
    assert.equal(r.ok, true);
  });

  it('wrong columns: one missing, one of the wrong type', async () => {
    await refused(setQuery(`SELECT 'Subscriber/OnHold' AS event_type, s.msisdn::bigint AS i_account, jsonb_build_object('msisdn', s.msisdn) AS variables
      FROM acme.subscriber s WHERE s.owner = source.variables ->> 'owner'`), '42703',
    new RegExp(`^espf\\.dispatcher_rules: rule "${RULE}": query: returns no column i_env \\(it returns event_type text, i_env integer, i_account bigint and variables jsonb\\)$`));
    await refused(setQuery(`SELECT 'Subscriber/OnHold' AS event_type, s.region AS i_env, s.msisdn::bigint AS i_account, s.msisdn AS variables
      FROM acme.subscriber s WHERE s.owner = source.variables ->> 'owner'`), '42804',
    new RegExp(`^espf\\.dispatcher_rules: rule "${RULE}": query: column variables must be jsonb, is text$`));
    await refused(setQuery(`SELECT 'Subscriber/OnHold' AS event_type, s.region AS i_env, s.msisdn AS i_account, jsonb_build_object() AS variables
      FROM acme.subscriber s WHERE s.owner = source.variables ->> 'owner'`), '42804', /query: column i_account must be bigint, is text$/);
  });

  it('bad SQL: a syntax error, an unknown column or table, a second statement, a query that cannot lock its rows', async () => {
    await refused(setQuery(ON_HOLD_QUERY.replace('FROM acme', 'FORM acme')), '42601', /query: syntax error at or near/);
    await refused(setQuery(ON_HOLD_QUERY.replace('s.state', 's.status')), '42703', /query: column s\.status does not exist$/);
    await refused(setQuery(ON_HOLD_QUERY.replace('acme.subscriber', 'acme.subscribers')), '42P01', /query: relation "acme\.subscribers" does not exist$/);
    await refused(setQuery(`${ON_HOLD_QUERY}; DELETE FROM acme.owner`), '23514', /query: one expression only: ';' is not allowed$/);
    await refused(setQuery(`SELECT DISTINCT 'Subscriber/OnHold' AS event_type, 1 AS i_env, s.msisdn::bigint AS i_account, '{}'::jsonb AS variables
      FROM acme.subscriber s WHERE s.owner = source.variables ->> 'owner'`), '0A000', /query: FOR NO KEY UPDATE is not allowed with DISTINCT clause$/);
  });

  it('an unknown source type, a handler that is not a dispatcher, an unknown handler', async () => {
    await refused(sql`INSERT INTO espf.dispatcher_rules (handler, event_type, query) VALUES ('AcmeOwnerDispatcher', 'Owner/Nope', ${ON_HOLD_QUERY})`,
      '23503', /^espf\.dispatcher_rules: rule "AcmeOwnerDispatcher: Owner\/Nope": event_type: unknown event type 'Owner\/Nope' \(not a row of espf\.event_types: insert the type first\)$/);
    await refused(sql`INSERT INTO espf.dispatcher_rules (handler, event_type, query) VALUES ('EventSender', 'Owner/OnHold', ${ON_HOLD_QUERY})`,
      '23514', /rule "EventSender: Owner\/OnHold": handler: EventSender is an http handler, not a dispatcher$/);
    await refused(sql`INSERT INTO espf.dispatcher_rules (handler, event_type, query) VALUES ('Nobody', 'Owner/OnHold', ${ON_HOLD_QUERY})`,
      '23503', /rule "Nobody: Owner\/OnHold": handler: unknown handler 'Nobody'/);
  });

  describe('espf rule list, show and check', () => {
    let home: string;
    const espf = (...args: string[]) => runEspf(args, { DATABASE_URL: t.url, ESPF_HOME: home });
    const show = (r: CliRun) => `exit ${r.code}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
    before(async () => { home = await mkdtemp(path.join(os.tmpdir(), 'espf-home-')); });
    after(async () => { await rm(home, { recursive: true, force: true }); });

    it('list and show: the dispatcher rules, built-in and local, and the function a rule compiles to', async () => {
      const list = await espf('rule', 'list');
      assert.equal(list.code, 0, show(list));
      const lines = list.stdout.trimEnd().split('\n');
      assert.ok(lines.some((l) => /^DISPATCHER RULE\s+DISPATCHER\s+CONSUMES\s+ENABLED\s+ORIGIN$/.test(l)), show(list));
      const row = (name: string) => lines.find((l) => l.startsWith(`${name} `))?.split(/\s{2,}/);
      assert.deepEqual(row(RULE), [RULE, 'AcmeOwnerDispatcher', 'Owner/OnHold', 'no', 'local']);
      assert.deepEqual(row('CustomerToAccountsDispatcher: Customer/Blocked'),
        ['CustomerToAccountsDispatcher: Customer/Blocked', 'CustomerToAccountsDispatcher', 'Customer/Blocked', 'no', 'built-in']);
      const one = await espf('rule', 'show', RULE);
      assert.equal(one.code, 0, show(one));
      assert.match(one.stdout, /^dispatcher:\s+AcmeOwnerDispatcher$/m);
      assert.match(one.stdout, /^ {2}FROM acme\.subscriber s$/m);
      assert.match(one.stdout, /CREATE OR REPLACE FUNCTION espf\.dispatch_acmeownerdispatcher_owner_onhold_[0-9a-f]{8}\(source_events bigint\[\]\)/);
      assert.match(one.stdout, /FOR NO KEY UPDATE OF q/);
      const all = await espf('rule', 'show', 'CustomerToAccountsDispatcher');
      assert.equal(all.code, 0, show(all));
      assert.equal(all.stdout.match(/^name: /gm)?.length, 7, 'the seven types it consumes');
    });

    it('espf migrate keeps a built-in dispatcher rule a DBA changed and says so; rule list shows it changed', async () => {
      const CHANGED = 'CustomerToAccountsDispatcher: Customer/Blocked';
      await t.db.query(sql`UPDATE espf.dispatcher_rules SET query = replace(query, 'THEN NOT a.blocked', 'THEN true')
                            WHERE handler = 'CustomerToAccountsDispatcher' AND event_type = 'Customer/Blocked'`);
      const r = await espf('migrate');
      assert.equal(r.code, 0, show(r));
      assert.match(r.stdout, new RegExp(`^kept built-in rule ${CHANGED} as changed by a DBA`, 'm'));
      const [row] = await t.db.query(sql`SELECT query LIKE '%THEN true%' AS kept, query <> shipped_query AS changed FROM espf.dispatcher_rules
                                          WHERE handler = 'CustomerToAccountsDispatcher' AND event_type = 'Customer/Blocked'`);
      assert.deepEqual(row, { kept: true, changed: true });
      const list = await espf('rule', 'list');
      assert.ok(list.stdout.split('\n').some((l) => l.startsWith(`${CHANGED} `) && l.endsWith('built-in, changed')), show(list));
      await t.db.query(sql`UPDATE espf.dispatcher_rules SET query = shipped_query WHERE handler = 'CustomerToAccountsDispatcher'`);
      assert.doesNotMatch((await espf('migrate')).stdout, /kept built-in rule Customer/);
    });

    it('check: a rule whose column was renamed, or whose table was dropped, is reported (exit 1, naming it)', async () => {
      const ok = await espf('rule', 'check');
      assert.equal(ok.code, 0, show(ok));
      await t.db.query(sql`ALTER TABLE acme.subscriber RENAME COLUMN state TO status`);
      let r = await espf('rule', 'check');
      assert.equal(r.code, 1, show(r));
      assert.match(r.stdout, new RegExp(`^espf\\.dispatcher_rules: rule "${RULE}": query: column s\\.state does not exist$`, 'm'));
      assert.match(r.stderr, new RegExp(`^espf: 1 of \\d+ rules do not compile: ${RULE}\\n$`));
      await t.db.query(sql`ALTER TABLE acme.subscriber RENAME COLUMN status TO state`);
      await t.db.query(sql`DELETE FROM espf.event_rules WHERE source = 'acme.subscriber'::regclass`);
      await t.db.query(sql`DROP TABLE acme.subscriber`);
      r = await espf('rule', 'check');
      assert.equal(r.code, 1, show(r));
      assert.match(r.stdout, new RegExp(`^espf\\.dispatcher_rules: rule "${RULE}": query: relation "acme\\.subscriber" does not exist$`, 'm'));
      const problems = await t.db.query(sql`SELECT name, code FROM espf.check_rules()`);
      assert.deepEqual(problems, [{ name: RULE, code: '42P01' }], 'espf.check_rules() reports it too');
    });
  });
});

describe('dispatcher rules: upgrade from the previous release (migrations/0022_dispatcher_rules.sql)', function () {
  it('keeps events and deliveries; the built-in dispatchers become rows of queries and still dispatch; a DBA\'s own view keeps working', async function () {
    this.timeout(90_000);
    const prev = await databaseAtPreviousRelease('0022_dispatcher_rules.sql');
    if (!prev) this.skip(); // not a git checkout
    const { db, dispose } = prev!;
    try {
      const ids = await seedCustomer(db);
      const accounts = await addAccounts(db, ids, 3, 'up-');
      await db.query(sql`UPDATE espf.event_types SET enabled = true WHERE name IN ('Customer/Blocked', 'Account/Blocked')`);
      await db.query(sql`INSERT INTO espf.events (i_event, event_type, variables)
                         SELECT g, 'Account/Blocked', jsonb_build_object('i_event', g, 'i_account', g) FROM generate_series(100001, 100020) g`);
      await db.query(sql`INSERT INTO espf.event_deliveries (i_event, handler, state, event_type, order_key, i_account, instance, commit_lsn, attempts)
                         SELECT g, 'EventSender', CASE WHEN g <= 100010 THEN 'DELIVERED' ELSE 'PENDING' END, 'Account/Blocked', 'a:' || g, g, 'main',
                                ('0/' || to_hex(1000 + g))::pg_lsn, 1 FROM generate_series(100001, 100020) g`);
      // A dispatcher of the DBA's own, on a view of theirs (the way before rules were rows).
      await db.query(sql`CREATE VIEW espf.my_blocked AS SELECT e.i_event AS source_i_event, 'Account/Blocked'::text AS event_type, a.i_env,
                           jsonb_build_object('i_account', a.i_account, 'mine', true) AS variables
                           FROM espf.events e JOIN billing.account a ON a.i_customer = (e.variables ->> 'i_customer')::bigint`);
      await db.query(sql`INSERT INTO espf.handlers (name, kind) VALUES ('MyDispatcher', 'dispatcher')`);
      await db.query(sql`INSERT INTO espf.dispatcher_rules (handler, event_type, view_name) VALUES ('MyDispatcher', 'Customer/Blocked', 'my_blocked')`);
      const before = await db.query(sql`SELECT to_jsonb(d) AS d FROM espf.event_deliveries d ORDER BY i_event`);
      const events = await db.query(sql`SELECT to_jsonb(e) AS e FROM espf.events e ORDER BY i_event`);

      const r = await migrate(db);
      assert.ok(r.applied.includes('0022_dispatcher_rules.sql'), `applied ${r.applied.join(', ')}`);
      assert.deepEqual(await db.query(sql`SELECT to_jsonb(d) AS d FROM espf.event_deliveries d ORDER BY i_event`), before);
      assert.deepEqual(await db.query(sql`SELECT to_jsonb(e) AS e FROM espf.events e ORDER BY i_event`), events);
      const rules = await db.query(sql`SELECT handler, count(*)::int AS n, bool_and(query = shipped_query) AS shipped, bool_and(query LIKE '%billing.account%') AS own
                                         FROM espf.dispatcher_rules GROUP BY 1 ORDER BY 1`);
      assert.deepEqual(rules, [
        { handler: 'CustomerToAccountsDispatcher', n: 7, shipped: true, own: true },
        { handler: 'MyDispatcher', n: 1, shipped: null, own: false },
        { handler: 'ProductToAccountsDispatcher', n: 1, shipped: true, own: true },
        { handler: 'ServiceAttributeDispatcher', n: 1, shipped: true, own: false },
      ]);
      assert.deepEqual(await db.query(sql`SELECT name FROM espf.check_rules()`), []);

      await db.query(sql`UPDATE billing.customer SET blocked = true WHERE i_customer = ${ids.i_customer}`);
      const [src] = await db.query(sql`SELECT i_event FROM espf.events WHERE event_type = 'Customer/Blocked'`);
      for (const handler of ['CustomerToAccountsDispatcher', 'MyDispatcher']) {
        const [d] = await db.query(sql`SELECT espf.dispatch(${handler}, ${[src.i_event]}::bigint[], 'main') AS n`);
        assert.equal(Number(d.n), 3, handler);
      }
      const children = await db.query(sql`SELECT variables FROM espf.events WHERE source_i_event = ${src.i_event} ORDER BY i_event`);
      const mine = children.filter((c) => c.variables.mine === true);
      assert.deepEqual(mine.map((c) => c.variables.i_account).sort(), [...accounts].sort());
      assert.deepEqual(children.filter((c) => c.variables.mine === undefined).map((c) => c.variables.i_customer), [ids.i_customer, ids.i_customer, ids.i_customer]);
      assert.deepEqual((await migrate(db)).applied, [], 'a second migrate applies nothing');
    } finally {
      await dispose();
    }
  });
});
