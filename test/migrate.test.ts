import assert from 'node:assert/strict';
import { appendFile, cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql, type Queryable } from '@databases/pg';
import { connect, type Db } from '../src/db/connect.ts';
import { EspfError } from '../src/errors.ts';
import { migrate, MIGRATE_LOCK_KEY, readMigrations } from '../src/migrate/migrate.ts';
import { MIGRATIONS_DIR, REPEATABLE_SQL_DIR } from '../src/paths.ts';
import { createEmptyDatabase, createTestDatabase, type TestDatabase } from './support/database.ts';
import { eventually } from './support/receiver.ts';
import { releaseBeforeChangeOf, type ReleasedCode } from './support/upgrade.ts';

/** Waits (polling pg_locks, no fixed sleep) until `n` sessions wait for an advisory lock in `db`'s database. */
async function waitForAdvisoryWaiters(db: Queryable, n: number, timeoutMs = 20_000): Promise<void> {
  await eventually(async () => {
    const [row] = await db.query(sql`
      SELECT count(*)::int AS waiting FROM pg_locks
       WHERE locktype = 'advisory' AND NOT granted
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`);
    return row.waiting >= n;
  }, timeoutMs, `${n} sessions to wait for the migrate lock`);
}

/** Asserts that migrate refuses `file` as edited, in one line. */
function refusedAsEdited(file: string) {
  return (err: unknown) => {
    assert.ok(err instanceof EspfError, String(err));
    assert.equal(err.code, 'ESPF_MIGRATION_EDITED');
    assert.match(err.message, new RegExp(`migrations/${file}.*edited`));
    assert.doesNotMatch(err.message, /\n/);
    return true;
  };
}

async function migrationRows(db: Db): Promise<{ version: number; name: string; checksum: string }[]> {
  return db.query(sql`SELECT version, name, checksum FROM espf.migrations ORDER BY version`);
}

describe('espf migrate', () => {
  describe('on the migrated template clone', () => {
    let t: TestDatabase;
    before(async () => { t = await createTestDatabase(); });
    after(async () => { await t.drop(); });

    it('is safe to run again: applies nothing new, re-applies sql/', async () => {
      const before = await migrationRows(t.db);
      const r = await migrate(t.db);
      assert.deepEqual(r.applied, []);
      assert.equal(r.alreadyApplied, (await readMigrations()).length);
      const sqlFiles = (await readdir(REPEATABLE_SQL_DIR)).filter((f) => f.endsWith('.sql')).sort();
      assert.deepEqual([...r.repeatable].sort(), sqlFiles, 'every file of sql/ is re-applied');
      assert.deepEqual(await migrationRows(t.db), before);
    });

    it('creates the built-in handlers, types and the EventSender row', async () => {
      const handlers = await t.db.query(sql`SELECT name, kind, enabled FROM espf.handlers ORDER BY name`);
      assert.deepEqual(handlers.map((h) => [h.name, h.kind]), [
        ['CustomerToAccountsDispatcher', 'dispatcher'], ['EventSender', 'http'],
        ['ProductToAccountsDispatcher', 'dispatcher'], ['ServiceAttributeDispatcher', 'dispatcher']]);
      assert.ok(handlers.every((h) => h.enabled === false));
      const [row] = await t.db.query(sql`SELECT url FROM espf.http_handlers WHERE handler = 'EventSender'`);
      assert.deepEqual(row.url, []);
      const [types] = await t.db.query(sql`SELECT count(*)::int AS n, count(*) FILTER (WHERE enabled)::int AS on FROM espf.event_types`);
      assert.ok(types.n >= 20, `${types.n} event types`);
      assert.equal(types.on, 0);
    });
  });

  describe('on an empty database', () => {
    let e: Awaited<ReturnType<typeof createEmptyDatabase>>;
    let db: Db;
    beforeEach(async () => {
      e = await createEmptyDatabase();
      db = connect({ connectionString: e.url, poolSize: 2 });
    });
    afterEach(async () => {
      await db.dispose();
      await e.drop();
    });

    it('applies every migration once, in order; the second run applies nothing', async () => {
      const files = await readMigrations();
      const first = await migrate(db);
      assert.deepEqual(first.applied, files.map((f) => f.name));
      assert.equal(first.alreadyApplied, 0);
      const rows = await migrationRows(db);
      assert.deepEqual(rows, files.map((f) => ({ version: f.version, name: f.name, checksum: f.checksum })));

      const second = await migrate(db);
      assert.deepEqual(second.applied, []);
      assert.equal(second.alreadyApplied, files.length);
      assert.deepEqual(second.repeatable, first.repeatable);
      assert.deepEqual(await migrationRows(db), rows);
    });

    it('two migrates at once both succeed and apply each migration once', async () => {
      const files = await readMigrations();
      const pools = [connect({ connectionString: e.url, poolSize: 1 }), connect({ connectionString: e.url, poolSize: 1 })];
      // Hold the migrate lock so that both runs are surely in flight together, then let them go.
      const blocker = connect({ connectionString: e.url, poolSize: 1 });
      try {
        const results = await blocker.task(async (conn) => {
          await conn.query(sql`SELECT pg_advisory_lock(${MIGRATE_LOCK_KEY})`);
          const runs = pools.map((p) => migrate(p));
          runs.forEach((r) => r.catch(() => undefined)); // settled below
          try {
            await waitForAdvisoryWaiters(conn, 2);
          } finally {
            await conn.query(sql`SELECT pg_advisory_unlock(${MIGRATE_LOCK_KEY})`);
          }
          return Promise.all(runs);
        });
        const applied = results.map((r) => r.applied.length).sort();
        assert.deepEqual(applied, [0, files.length], 'one run applies everything, the other nothing');
        assert.deepEqual((await migrationRows(db)).map((r) => r.version), files.map((f) => f.version));
        const [h] = await db.query(sql`SELECT count(*)::int AS n FROM espf.handlers`);
        assert.equal(h.n, 4);
      } finally {
        await Promise.all([...pools, blocker].map((p) => p.dispose()));
      }
    });

    describe('with a copy of migrations/', () => {
      let dir: string;
      beforeEach(async () => {
        dir = await mkdtemp(path.join(os.tmpdir(), 'espf-migrations-'));
        await cp(MIGRATIONS_DIR, dir, { recursive: true });
      });
      afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

      it('refuses a migration whose statements were edited after it was applied (ESPF_MIGRATION_EDITED), and applies nothing', async () => {
        await migrate(db, { migrations: dir });
        const before = await migrationRows(db);
        const [edited] = (await readdir(dir)).filter((n) => n.endsWith('.sql')).sort();
        assert.ok(edited);
        await appendFile(path.join(dir, edited), '\nCREATE TABLE espf.sneaked_in (x int);\n');
        // A new migration next to the edited one must not be applied either.
        await writeFile(path.join(dir, '9001_after_edit.sql'), 'CREATE TABLE espf.after_edit (x int);\n');

        await assert.rejects(migrate(db, { migrations: dir }), refusedAsEdited(edited));
        assert.deepEqual(await migrationRows(db), before);
        const [t] = await db.query(sql`SELECT to_regclass('espf.after_edit') AS a, to_regclass('espf.sneaked_in') AS s`);
        assert.deepEqual(t, { a: null, s: null });
      });

      it('accepts a migration whose comment lines and blank lines were edited, and records nothing new', async () => {
        await migrate(db, { migrations: dir });
        const before = await migrationRows(db);
        const file = path.join(dir, '0002_espf.sql');
        const text = await readFile(file, 'utf8');
        const reworded = text.replace(/^-- .*$/m, '-- A comment reworded after release.')
          .replace(/\n\n/, '\n\n   -- a comment of its own line, indented\n\n\n');
        assert.notEqual(reworded, text);
        await writeFile(file, `-- a new first line\n${reworded}\n-- and a last one`);
        await writeFile(path.join(dir, '9001_after_comments.sql'), 'CREATE TABLE espf.after_comments (x int);\n');

        const r = await migrate(db, { migrations: dir });
        assert.deepEqual(r.applied, ['9001_after_comments.sql']);
        assert.deepEqual((await migrationRows(db)).filter((m) => m.version < 9000), before);
        assert.deepEqual((await migrate(db, { migrations: dir })).applied, []);
      });

      it('refuses a changed comment after a statement on the same line (only comment lines are left out)', async () => {
        await migrate(db, { migrations: dir });
        const before = await migrationRows(db);
        const file = path.join(dir, '0004_operations.sql');
        const text = await readFile(file, 'utf8');
        const edited = text.replace('-- at most one e-mail per interval', '-- reworded');
        assert.notEqual(edited, text);
        await writeFile(file, edited);
        await assert.rejects(migrate(db, { migrations: dir }), refusedAsEdited('0004_operations.sql'));
        assert.deepEqual(await migrationRows(db), before);
      });

      it('applies a new migration once, and a failing one not at all (its own transaction)', async () => {
        await migrate(db, { migrations: dir });
        await writeFile(path.join(dir, '9001_added.sql'), 'CREATE TABLE espf.added (x int);\n');
        const r = await migrate(db, { migrations: dir });
        assert.deepEqual(r.applied, ['9001_added.sql']);
        assert.deepEqual((await migrate(db, { migrations: dir })).applied, []);

        await writeFile(path.join(dir, '9002_broken.sql'), 'CREATE TABLE espf.broken (x int);\nSELECT 1/0;\n');
        await assert.rejects(migrate(db, { migrations: dir }), (err: unknown) => {
          assert.ok(err instanceof EspfError, String(err));
          assert.equal(err.code, 'ESPF_MIGRATION_FAILED');
          assert.match(err.message, /^migrations\/9002_broken\.sql: division by zero/);
          return true;
        });
        const [t] = await db.query(sql`SELECT to_regclass('espf.broken') AS t`);
        assert.equal(t.t, null);
        assert.deepEqual((await migrationRows(db)).map((m) => m.version).filter((v) => v > 9000), [9001]);
      });
    });

    describe('migrated by the release before the comments of migrations/ were reworded', () => {
      let prev: ReleasedCode | null;
      let before: { version: number; name: string; checksum: string }[];
      beforeEach(async function () {
        prev = await releaseBeforeChangeOf('migrations/0002_espf.sql');
        if (!prev) this.skip(); // not a git checkout
        await prev.migrate(db, { migrations: prev.migrations, repeatable: prev.repeatable });
        before = await migrationRows(db);
        await db.query(sql`INSERT INTO billing.product (i_product, name) VALUES (1, 'kept across the upgrade')`);
      });
      afterEach(async () => { await prev?.remove(); });

      it('upgrades: the whole-file sums it recorded are accepted and replaced by statement sums; a second run is a no-op', async () => {
        // That release recorded the sha256 of each whole file, comments included.
        assert.ok(before.length >= 12);
        for (const row of before) assert.match(row.checksum, /^[0-9a-f]{64}$/, row.name);
        const files = await readMigrations();
        const changed = await Promise.all(before.map(async (row) =>
          (await readFile(path.join(prev!.migrations, row.name), 'utf8')) !== (await readFile(path.join(MIGRATIONS_DIR, row.name), 'utf8'))));
        assert.ok(changed.some(Boolean), 'a migration of that release was reworded since');

        const r = await migrate(db);
        assert.deepEqual(r.applied, files.filter((f) => !before.some((b) => b.version === f.version)).map((f) => f.name));
        const rows = await migrationRows(db);
        assert.deepEqual(rows, files.map((f) => ({ version: f.version, name: f.name, checksum: f.checksum })));
        for (const row of rows) assert.match(row.checksum, /^sql-sha256:[0-9a-f]{64}$/, row.name);
        const [p] = await db.query(sql`SELECT name FROM billing.product WHERE i_product = 1`);
        assert.equal(p.name, 'kept across the upgrade');

        const again = await migrate(db);
        assert.deepEqual(again.applied, []);
        assert.deepEqual(await migrationRows(db), rows);
      });

      it('still refuses a statement edit of a reworded migration, and changes nothing', async () => {
        const dir = await mkdtemp(path.join(os.tmpdir(), 'espf-migrations-'));
        try {
          await cp(MIGRATIONS_DIR, dir, { recursive: true });
          await appendFile(path.join(dir, '0002_espf.sql'), 'CREATE TABLE espf.sneaked_in (x int);\n');
          await assert.rejects(migrate(db, { migrations: dir }), refusedAsEdited('0002_espf.sql'));
          assert.deepEqual(await migrationRows(db), before);
          const [t] = await db.query(sql`SELECT to_regclass('espf.sneaked_in') AS s`);
          assert.equal(t.s, null);
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      });
    });
  });
});
