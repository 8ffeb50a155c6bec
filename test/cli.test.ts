import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from '@databases/pg';
import { freePort } from '../src/db/cluster.ts';
import { type Db } from '../src/db/connect.ts';
import { MIGRATE_LOCK_KEY, readMigrations } from '../src/migrate/migrate.ts';
import { espf as runEspf, show, type EspfRun } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { eventually } from './support/receiver.ts';

/**
 * The real `espf` command as a child process (test/support/cli.ts), against a
 * fresh database. Every refusal: exit 1, exactly one line on stderr, nothing on
 * stdout, and the configuration rows unchanged.
 */

type Run = EspfRun;
let home: string; // ESPF_HOME: an empty folder, so no embedded database is found by accident

function espf(args: string[], env: Record<string, string | undefined>): Promise<Run> {
  return runEspf(args, { ESPF_HOME: home, ...env });
}

function assertOk(r: Run): void {
  assert.equal(r.code, 0, show(r));
  assert.equal(r.stderr, '', show(r));
}

/** Exactly one line on stderr (matching `reason`), nothing on stdout, the given exit code. */
function assertRefused(r: Run, reason: RegExp, code = 1): void {
  assert.equal(r.code, code, show(r));
  assert.equal(r.stdout, '', show(r));
  assert.match(r.stderr, /^[^\n]+\n$/, `one line on stderr:\n${show(r)}`);
  assert.match(r.stderr, reason, show(r));
}

/** Everything the CLI can write. */
async function snapshot(db: Db): Promise<unknown> {
  const [s] = await db.query(sql`SELECT
    (SELECT json_agg(h ORDER BY name) FROM espf.handlers h) AS handlers,
    (SELECT json_agg(s ORDER BY handler, event_type) FROM espf.subscriptions s) AS subscriptions,
    (SELECT json_agg(t ORDER BY name) FROM espf.event_types t) AS event_types,
    (SELECT json_agg(x ORDER BY handler) FROM espf.http_handlers x) AS http_handlers`);
  return s;
}

async function subscriptions(db: Db, handler: string): Promise<string[]> {
  const rows: { event_type: string }[] = await db.query(
    sql`SELECT event_type FROM espf.subscriptions WHERE handler = ${handler} ORDER BY event_type`);
  return rows.map((r) => r.event_type);
}

async function allTypes(db: Db): Promise<string[]> {
  const rows: { name: string }[] = await db.query(sql`SELECT name FROM espf.event_types ORDER BY name`);
  return rows.map((r) => r.name);
}

async function consumes(db: Db, handler: string): Promise<string[]> {
  const rows: { event_type: string }[] = await db.query(
    sql`SELECT event_type FROM espf.dispatcher_rules WHERE handler = ${handler} ORDER BY event_type`);
  return rows.map((r) => r.event_type);
}

async function enabled(db: Db, table: 'handlers' | 'event_types', name: string): Promise<boolean> {
  const [row] = table === 'handlers'
    ? await db.query(sql`SELECT enabled FROM espf.handlers WHERE name = ${name}`)
    : await db.query(sql`SELECT enabled FROM espf.event_types WHERE name = ${name}`);
  assert.ok(row, `${table} ${name}`);
  return row.enabled;
}

/** Parses `espf matrix`: { type → { handler → state } } and { type → enabled }. */
function parseMatrix(out: string): { cells: Map<string, Map<string, string>>; on: Map<string, boolean> } {
  const lines = out.split('\n');
  const header = lines[0] ?? '';
  assert.match(header, /^event type\s+on\s+1/, out);
  const typeWidth = header.indexOf('on  ');
  const legend = lines.flatMap((l) => {
    const m = /^\s+(\d+): (\S+)$/.exec(l);
    return m ? [{ n: Number(m[1]), handler: m[2]! }] : [];
  });
  assert.ok(legend.length > 0, out);
  const cells = new Map<string, Map<string, string>>();
  const on = new Map<string, boolean>();
  for (const line of lines.slice(1)) {
    if (line === '') break;
    const type = line.slice(0, typeWidth).trim();
    on.set(type, line.slice(typeWidth, typeWidth + 4).trim() === 'yes');
    const row = new Map<string, string>();
    for (const { n, handler } of legend) {
      const col = typeWidth + 4 + (n - 1) * 4;
      assert.equal(header.slice(col, col + 4).trim(), String(n), `column of handler ${n}:\n${out}`);
      row.set(handler, line[col + 1] ?? ' ');
    }
    cells.set(type, row);
  }
  return { cells, on };
}

const emptyDatabase = () => createTestDatabase({ empty: true });

describe('espf CLI (child process)', function () {
  this.timeout(120_000);
  let t: TestDatabase;
  let env: Record<string, string>;
  before(async () => {
    home = await mkdtemp(path.join(os.tmpdir(), 'espf-cli-home-'));
    t = await createTestDatabase();
    env = { DATABASE_URL: t.url };
  });
  after(async () => {
    await t?.drop();
    await rm(home, { recursive: true, force: true });
  });

  describe('--help', () => {
    it('espf --help (and espf alone) lists every command, the environment and the exit codes', async () => {
      for (const args of [['--help'], [], ['help']]) {
        const r = await espf(args, env);
        assertOk(r);
        for (const cmd of ['migrate', 'run', 'handler', 'type', 'matrix']) {
          assert.match(r.stdout, new RegExp(`^\\s+${cmd}\\b`, 'm'), `${args.join(' ')} lists ${cmd}:\n${r.stdout}`);
        }
        assert.match(r.stdout, /DATABASE_URL/);
        assert.match(r.stdout, /Exit codes:/);
      }
    });

    const commands: [string[], RegExp][] = [
      [['migrate'], /^Usage: espf migrate \[options\]/],
      [['run'], /^Usage: espf run \[options\][\s\S]*--instance <name>/],
      [['handler'], /^Usage: espf handler \[options\] \[command\][\s\S]*enable <handler>[\s\S]*disable <handler>[\s\S]*sub <handler> <type>[\s\S]*unsub <handler> <type>/],
      [['handler', 'enable'], /^Usage: espf handler enable \[options\] <handler>/],
      [['handler', 'disable'], /^Usage: espf handler disable \[options\] <handler>/],
      [['handler', 'sub'], /^Usage: espf handler sub \[options\] <handler> <type>[\s\S]*'all'/],
      [['handler', 'unsub'], /^Usage: espf handler unsub \[options\] <handler> <type>/],
      [['type'], /^Usage: espf type \[options\] \[command\][\s\S]*enable <type>[\s\S]*disable <type>/],
      [['type', 'enable'], /^Usage: espf type enable \[options\] <type>[\s\S]*'all'/],
      [['type', 'disable'], /^Usage: espf type disable \[options\] <type>/],
      [['matrix'], /^Usage: espf matrix \[options\]/],
    ];
    for (const [cmd, usage] of commands) {
      it(`espf ${cmd.join(' ')} --help`, async () => {
        const before = await snapshot(t.db);
        const r = await espf([...cmd, '--help'], env);
        assertOk(r);
        assert.match(r.stdout, usage);
        assert.deepEqual(await snapshot(t.db), before);
      });
    }

    it('espf help <command> and espf handler help <sub>', async () => {
      let r = await espf(['help', 'handler'], env);
      assertOk(r);
      assert.match(r.stdout, /^Usage: espf handler /);
      r = await espf(['handler', 'help', 'sub'], env);
      assertOk(r);
      assert.match(r.stdout, /^Usage: espf handler sub /);
    });
  });

  describe('bad usage: one line, exit 2', () => {
    const cases: [string[], RegExp][] = [
      [['bogus'], /^espf: unknown command 'bogus' \(see: espf --help\)$/m],
      [['matrx'], /^espf: unknown command 'matrx' \(Did you mean matrix\?\)/],
      [['--bogus'], /^espf: unknown option '--bogus'/],
      [['handler'], /^espf handler: missing command: enable, disable, sub, unsub, check, set or show \(see: espf handler --help\)$/m],
      [['handler', 'bogus'], /^espf handler: unknown command 'bogus'/],
      [['handler', 'enable'], /^espf handler enable: missing required argument 'handler' \(see: espf handler enable --help\)$/m],
      [['handler', 'sub', 'EventSender'], /^espf handler sub: missing required argument 'type'/],
      [['handler', 'sub', 'EventSender', 'Account/New', 'extra'], /^espf handler sub: too many arguments/],
      [['type'], /^espf type: missing command: enable or disable/],
      [['type', 'enable'], /^espf type enable: missing required argument 'type'/],
      [['matrix', 'extra'], /^espf matrix: too many arguments/],
      [['migrate', '--force'], /^espf migrate: unknown option '--force'/],
      [['console'], /^espf console: missing command: user, enable or disable \(see: espf console --help\)$/m],
      [['console', 'user', 'bogus'], /^espf console user: unknown command 'bogus': use add, password, remove or list/],
      [['console', 'user', 'add', 'x'], /^espf console user add: required option '--role <role>' not specified/],
      [['console', 'user', 'add', 'x', '--role', 'admin', '--password', 'secret'], /^espf console user add: unknown option '--password'/],
    ];
    for (const [args, reason] of cases) {
      it(`espf ${args.join(' ')}`, async () => {
        const before = await snapshot(t.db);
        assertRefused(await espf(args, env), reason, 2);
        assert.deepEqual(await snapshot(t.db), before);
      });
    }
  });

  describe('migrate', () => {
    let e: Awaited<ReturnType<typeof emptyDatabase>>;
    beforeEach(async () => { e = await emptyDatabase(); });
    afterEach(async () => { await e.drop(); });

    it('applies every migration, then (run again) nothing', async () => {
      const n = (await readMigrations()).length;
      let r = await espf(['migrate'], { DATABASE_URL: e.url });
      assertOk(r);
      assert.match(r.stdout, new RegExp(`^migrations: ${n} applied \\(0001_[^)]*\\), 0 already applied; sql/: \\d+ files re-applied\\n$`));
      const rows = await e.db.query(sql`SELECT version, checksum, applied_at FROM espf.migrations ORDER BY version`);
      assert.equal(rows.length, n);

      r = await espf(['migrate'], { DATABASE_URL: e.url });
      assertOk(r);
      assert.match(r.stdout, new RegExp(`^migrations: 0 applied, ${n} already applied; sql/: \\d+ files re-applied\\n$`));
      assert.deepEqual(await e.db.query(sql`SELECT version, checksum, applied_at FROM espf.migrations ORDER BY version`), rows);
    });

    it('two espf migrate processes at once both succeed; each migration is applied once', async () => {
      const n = (await readMigrations()).length;
      // Hold the migrate lock until both processes wait for it, so they surely overlap.
      const results = await e.db.task(async (conn) => {
        await conn.query(sql`SELECT pg_advisory_lock(${MIGRATE_LOCK_KEY})`);
        const runs = [espf(['migrate'], { DATABASE_URL: e.url }), espf(['migrate'], { DATABASE_URL: e.url })];
        try {
          await eventually(async () => {
            const [w] = await conn.query(sql`SELECT count(*)::int AS n FROM pg_locks
              WHERE locktype = 'advisory' AND NOT granted
                AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`);
            return w.n >= 2;
          }, 30_000, 'both migrate processes to wait for the lock');
        } finally {
          await conn.query(sql`SELECT pg_advisory_unlock(${MIGRATE_LOCK_KEY})`);
        }
        return Promise.all(runs);
      });
      for (const r of results) assertOk(r);
      const applied = results.map((r) => /^migrations: (\d+) applied/.exec(r.stdout)?.[1]).sort();
      assert.deepEqual(applied, ['0', String(n)], results.map(show).join('\n'));
      const [m] = await e.db.query(sql`SELECT count(*)::int AS n, count(DISTINCT version)::int AS d FROM espf.migrations`);
      assert.deepEqual(m, { n, d: n });
    });

    it('other commands on a database that was never migrated: one line saying to run espf migrate', async () => {
      const runs = await Promise.all([['matrix'], ['handler', 'enable', 'EventSender'], ['type', 'enable', 'all']]
        .map((args) => espf(args, { DATABASE_URL: e.url })));
      for (const r of runs) assertRefused(r, /^espf: the espf schema is missing in .*: run espf migrate first$/m);
      const [s] = await e.db.query(sql`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'espf'`);
      assert.equal(s.n, 0);
    });
  });

  describe('handler enable | disable', () => {
    afterEach(async () => {
      await t.db.query(sql`UPDATE espf.handlers SET enabled = false`);
      await t.db.query(sql`UPDATE espf.http_handlers SET url = '{}'`);
    });

    it('enables and disables a dispatcher', async () => {
      let r = await espf(['handler', 'enable', 'CustomerToAccountsDispatcher'], env);
      assertOk(r);
      assert.equal(r.stdout, 'handler CustomerToAccountsDispatcher enabled\n');
      assert.equal(await enabled(t.db, 'handlers', 'CustomerToAccountsDispatcher'), true);
      assert.equal(await enabled(t.db, 'handlers', 'ProductToAccountsDispatcher'), false);

      r = await espf(['handler', 'enable', 'CustomerToAccountsDispatcher'], env);
      assertOk(r);
      assert.equal(r.stdout, 'handler CustomerToAccountsDispatcher enabled (no change)\n');

      r = await espf(['handler', 'disable', 'CustomerToAccountsDispatcher'], env);
      assertOk(r);
      assert.equal(r.stdout, 'handler CustomerToAccountsDispatcher disabled\n');
      assert.equal(await enabled(t.db, 'handlers', 'CustomerToAccountsDispatcher'), false);
    });

    it('refuses to enable an http handler with no URL (EventSender as migrated), and changes nothing', async () => {
      const before = await snapshot(t.db);
      assertRefused(await espf(['handler', 'enable', 'EventSender'], env),
        /^espf: espf\.handlers\.enabled: http handler EventSender cannot be enabled while espf\.http_handlers\.url is empty/);
      assert.deepEqual(await snapshot(t.db), before);
    });

    it('enables an http handler once it has a URL, and disables it', async () => {
      await t.db.query(sql`UPDATE espf.http_handlers SET url = '{http://127.0.0.1:9/hook}' WHERE handler = 'EventSender'`);
      assertOk(await espf(['handler', 'enable', 'EventSender'], env));
      assert.equal(await enabled(t.db, 'handlers', 'EventSender'), true);
      assertOk(await espf(['handler', 'disable', 'EventSender'], env));
      assert.equal(await enabled(t.db, 'handlers', 'EventSender'), false);
    });

    it('refuses an unknown handler, naming the known ones, and changes nothing', async () => {
      for (const action of ['enable', 'disable']) {
        const before = await snapshot(t.db);
        assertRefused(await espf(['handler', action, 'NoSuchHandler'], env),
          /^espf: unknown handler 'NoSuchHandler' \(known: CustomerToAccountsDispatcher, EventSender, ProductToAccountsDispatcher, ServiceAttributeDispatcher\)$/m);
        assert.deepEqual(await snapshot(t.db), before);
      }
    });
  });

  describe('handler sub | unsub', () => {
    afterEach(async () => { await t.db.query(sql`DELETE FROM espf.subscriptions`); });

    it('subscribes and unsubscribes an http handler to one type', async () => {
      let r = await espf(['handler', 'sub', 'EventSender', 'Account/Blocked'], env);
      assertOk(r);
      assert.equal(r.stdout, 'EventSender: 1 subscription added\n');
      assert.deepEqual(await subscriptions(t.db, 'EventSender'), ['Account/Blocked']);

      r = await espf(['handler', 'sub', 'EventSender', 'Account/Blocked'], env);
      assertOk(r);
      assert.equal(r.stdout, 'EventSender: 0 subscriptions added\n');

      r = await espf(['handler', 'unsub', 'EventSender', 'Account/Blocked'], env);
      assertOk(r);
      assert.equal(r.stdout, 'EventSender: 1 subscription removed\n');
      assert.deepEqual(await subscriptions(t.db, 'EventSender'), []);
    });

    it("'all' for an http handler is every event type", async () => {
      const types = await allTypes(t.db);
      await t.db.query(sql`INSERT INTO espf.subscriptions (handler, event_type) VALUES ('EventSender', 'Account/New')`);
      let r = await espf(['handler', 'sub', 'EventSender', 'all'], env);
      assertOk(r);
      assert.equal(r.stdout, `EventSender: ${types.length - 1} subscriptions added\n`);
      assert.deepEqual(await subscriptions(t.db, 'EventSender'), types);

      r = await espf(['handler', 'unsub', 'EventSender', 'all'], env);
      assertOk(r);
      assert.equal(r.stdout, `EventSender: ${types.length} subscriptions removed\n`);
      assert.deepEqual(await subscriptions(t.db, 'EventSender'), []);
    });

    it("'all' for a dispatcher is only the types it consumes (espf.dispatcher_rules)", async () => {
      for (const d of ['CustomerToAccountsDispatcher', 'ProductToAccountsDispatcher', 'ServiceAttributeDispatcher']) {
        const c = await consumes(t.db, d);
        assert.ok(c.length > 0, d);
        const r = await espf(['handler', 'sub', d, 'all'], env);
        assertOk(r);
        assert.deepEqual(await subscriptions(t.db, d), c);
        assert.equal(r.stdout, `${d}: ${c.length} subscription${c.length === 1 ? '' : 's'} added\n`);
      }
      assert.deepEqual(await subscriptions(t.db, 'ProductToAccountsDispatcher'), ['Product/ServiceAttribute/Changed']);
      assert.deepEqual(await subscriptions(t.db, 'ServiceAttributeDispatcher'), ['ServiceAttribute/Changed']);
      assert.deepEqual(await subscriptions(t.db, 'EventSender'), []);

      const r = await espf(['handler', 'unsub', 'CustomerToAccountsDispatcher', 'all'], env);
      assertOk(r);
      assert.deepEqual(await subscriptions(t.db, 'CustomerToAccountsDispatcher'), []);
      assert.deepEqual(await subscriptions(t.db, 'ServiceAttributeDispatcher'), ['ServiceAttribute/Changed']);
    });

    it('subscribes a dispatcher to a type it consumes', async () => {
      assertOk(await espf(['handler', 'sub', 'CustomerToAccountsDispatcher', 'Customer/Blocked'], env));
      assert.deepEqual(await subscriptions(t.db, 'CustomerToAccountsDispatcher'), ['Customer/Blocked']);
    });

    it('refuses a subscription a dispatcher cannot serve, with the database\'s message, and changes nothing', async () => {
      await t.db.query(sql`INSERT INTO espf.subscriptions (handler, event_type) VALUES ('CustomerToAccountsDispatcher', 'Customer/Blocked')`);
      const before = await snapshot(t.db);
      assertRefused(await espf(['handler', 'sub', 'CustomerToAccountsDispatcher', 'Account/New'], env),
        /^espf: espf\.subscriptions\.event_type: dispatcher CustomerToAccountsDispatcher cannot consume 'Account\/New'; it consumes only: Customer\//);
      assertRefused(await espf(['handler', 'sub', 'ServiceAttributeDispatcher', 'Customer/Blocked'], env),
        /^espf: espf\.subscriptions\.event_type: dispatcher ServiceAttributeDispatcher cannot consume 'Customer\/Blocked'; it consumes only: ServiceAttribute\/Changed$/m);
      assert.deepEqual(await snapshot(t.db), before);
    });

    it('refuses an unknown handler or an unknown type, and changes nothing', async () => {
      await t.db.query(sql`INSERT INTO espf.subscriptions (handler, event_type) VALUES ('EventSender', 'Account/New')`);
      const before = await snapshot(t.db);
      const cases: [string[], RegExp][] = ['sub', 'unsub'].flatMap((action): [string[], RegExp][] => [
        [['handler', action, 'NoSuchHandler', 'Account/New'], /^espf: unknown handler 'NoSuchHandler' \(known: /],
        [['handler', action, 'NoSuchHandler', 'all'], /^espf: unknown handler 'NoSuchHandler' \(known: /],
        [['handler', action, 'EventSender', 'Account/Nope'], /^espf: unknown event type 'Account\/Nope'/],
        [['handler', action, 'CustomerToAccountsDispatcher', 'Customer/Nope'], /^espf: unknown event type 'Customer\/Nope'/],
      ]);
      // Refusals change nothing, so they can run side by side.
      const runs = await Promise.all(cases.map(([args]) => espf(args, env)));
      runs.forEach((r, i) => assertRefused(r, cases[i]![1]));
      assert.deepEqual(await snapshot(t.db), before);
    });
  });

  describe('type enable | disable', () => {
    afterEach(async () => { await t.db.query(sql`UPDATE espf.event_types SET enabled = false`); });

    it('enables and disables one type', async () => {
      let r = await espf(['type', 'enable', 'Account/Blocked'], env);
      assertOk(r);
      assert.equal(r.stdout, '1 event type enabled\n');
      assert.equal(await enabled(t.db, 'event_types', 'Account/Blocked'), true);
      assert.equal(await enabled(t.db, 'event_types', 'Account/Unblocked'), false);

      r = await espf(['type', 'enable', 'Account/Blocked'], env);
      assertOk(r);
      assert.equal(r.stdout, '0 event types enabled\n');

      r = await espf(['type', 'disable', 'Account/Blocked'], env);
      assertOk(r);
      assert.equal(r.stdout, '1 event type disabled\n');
      assert.equal(await enabled(t.db, 'event_types', 'Account/Blocked'), false);
    });

    it("'all' enables and disables every type", async () => {
      const types = await allTypes(t.db);
      await t.db.query(sql`UPDATE espf.event_types SET enabled = true WHERE name = 'Account/New'`);
      let r = await espf(['type', 'enable', 'all'], env);
      assertOk(r);
      assert.equal(r.stdout, `${types.length - 1} event types enabled\n`);
      const [on] = await t.db.query(sql`SELECT bool_and(enabled) AS all FROM espf.event_types`);
      assert.equal(on.all, true);

      r = await espf(['type', 'disable', 'all'], env);
      assertOk(r);
      assert.equal(r.stdout, `${types.length} event types disabled\n`);
      const [off] = await t.db.query(sql`SELECT bool_or(enabled) AS any FROM espf.event_types`);
      assert.equal(off.any, false);
    });

    it('refuses an unknown type, and changes nothing', async () => {
      await t.db.query(sql`UPDATE espf.event_types SET enabled = true WHERE name = 'Account/New'`);
      const before = await snapshot(t.db);
      const cases: [string[], RegExp][] = ['enable', 'disable'].flatMap((action): [string[], RegExp][] => [
        [['type', action, 'Account/Nope'], /^espf: unknown event type 'Account\/Nope' \(see: espf matrix\)$/m],
        [['type', action, 'ALL'], /^espf: unknown event type 'ALL'/],
      ]);
      const runs = await Promise.all(cases.map(([args]) => espf(args, env)));
      runs.forEach((r, i) => assertRefused(r, cases[i]![1]));
      assert.deepEqual(await snapshot(t.db), before);
    });
  });

  describe('matrix', () => {
    afterEach(async () => {
      await t.db.query(sql`DELETE FROM espf.subscriptions`);
      await t.db.query(sql`UPDATE espf.event_types SET enabled = false`);
    });

    it("prints espf.matrix: '.' before, '+' after espf handler sub, ' ' where a dispatcher cannot subscribe", async () => {
      let r = await espf(['matrix'], env);
      assertOk(r);
      let m = parseMatrix(r.stdout);
      assert.equal(m.cells.get('Account/Blocked')?.get('EventSender'), '.');
      assert.equal(m.cells.get('Customer/Blocked')?.get('CustomerToAccountsDispatcher'), '.');
      assert.equal(m.cells.get('Account/Blocked')?.get('CustomerToAccountsDispatcher'), ' ');

      assertOk(await espf(['handler', 'sub', 'EventSender', 'Account/Blocked'], env));
      assertOk(await espf(['handler', 'sub', 'CustomerToAccountsDispatcher', 'Customer/Blocked'], env));
      assertOk(await espf(['type', 'enable', 'Account/Blocked'], env));
      r = await espf(['matrix'], env);
      assertOk(r);
      m = parseMatrix(r.stdout);
      assert.equal(m.cells.get('Account/Blocked')?.get('EventSender'), '+', r.stdout);
      assert.equal(m.cells.get('Customer/Blocked')?.get('CustomerToAccountsDispatcher'), '+', r.stdout);
      assert.equal(m.cells.get('Account/Unblocked')?.get('EventSender'), '.', r.stdout);
      assert.equal(m.on.get('Account/Blocked'), true);
      assert.equal(m.on.get('Account/Unblocked'), false);

      // Every cell is the view's.
      const view: { event_type: string; handler: string; state: string }[] =
        await t.db.query(sql`SELECT event_type, handler, state FROM espf.matrix`);
      assert.equal(m.cells.size, (await allTypes(t.db)).length);
      for (const v of view) {
        assert.equal(m.cells.get(v.event_type)?.get(v.handler), v.state, `${v.event_type} × ${v.handler}`);
      }
    });
  });

  describe('no database', () => {
    it('DATABASE_URL pointing at a closed port: one line, exit 1, for every command that needs the database', async () => {
      const port = await freePort();
      const url = `postgres://postgres:secret@127.0.0.1:${port}/espf`;
      const before = await snapshot(t.db);
      const commands = [['migrate'], ['matrix'], ['handler', 'enable', 'EventSender'], ['handler', 'disable', 'EventSender'],
        ['handler', 'sub', 'EventSender', 'all'], ['handler', 'unsub', 'EventSender', 'all'], ['type', 'enable', 'all'], ['type', 'disable', 'all']];
      const runs = await Promise.all(commands.map((c) => espf(c, { DATABASE_URL: url })));
      for (const r of runs) {
        assertRefused(r, new RegExp(`^espf: cannot reach the database at postgres://postgres:\\*\\*\\*@127\\.0\\.0\\.1:${port}/espf: .*ECONNREFUSED`, 'm'));
        assert.doesNotMatch(r.stderr, /secret/);
      }
      assert.deepEqual(await snapshot(t.db), before);
    });

    it('a DATABASE_URL that is not a connection string: one line, exit 1', async () => {
      assertRefused(await espf(['matrix'], { DATABASE_URL: 'not a url' }), /^espf: DATABASE_URL is not a PostgreSQL connection string/);
    });

    it('no DATABASE_URL and no embedded database running: one line, exit 1', async () => {
      assertRefused(await espf(['matrix'], { DATABASE_URL: undefined }),
        /^espf: DATABASE_URL is not set and the embedded database is not running \(start it with: npx espf run\)$/m);
    });

    it('no DATABASE_URL while the embedded database of espf run is up: uses it (its port from ESPF_HOME/data/postmaster.pid)', async () => {
      // A postmaster.pid naming a live process (this one) and a port: the CLI goes there, to database 'espf'.
      const embedded = await mkdtemp(path.join(os.tmpdir(), 'espf-cli-embedded-'));
      try {
        const port = await freePort();
        await mkdir(path.join(embedded, 'data'), { recursive: true });
        await writeFile(path.join(embedded, 'data', 'postmaster.pid'), `${process.pid}\n${embedded}/data\n0\n${port}\n`);
        assertRefused(await espf(['matrix'], { DATABASE_URL: undefined, ESPF_HOME: embedded }),
          new RegExp(`^espf: cannot reach the database at postgres://postgres@127\\.0\\.0\\.1:${port}/espf: `, 'm'));
      } finally {
        await rm(embedded, { recursive: true, force: true });
      }
    });
  });
});
