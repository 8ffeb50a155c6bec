import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql, type SQLQuery } from '@databases/pg';
import { connect } from '../src/db/connect.ts';
import { migrate } from '../src/migrate/migrate.ts';
import { ROOT } from '../src/paths.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';

describe('outage: breaker settings and the waiting pages in the database', function () {
  let t: TestDatabase;
  before(async () => { t = await createTestDatabase(); });
  after(async () => { await t?.drop(); });

  /** The statement is refused with 23514, naming the column, and changes nothing. */
  async function refused(set: SQLQuery, column: string): Promise<void> {
    const before = await t.db.query(sql`SELECT to_jsonb(h) AS h FROM espf.http_handlers h WHERE handler = 'EventSender'`);
    await assert.rejects(t.db.query(sql`UPDATE espf.http_handlers SET ${set} WHERE handler = 'EventSender'`), (err: Error & { code?: string }) => {
      assert.equal(err.code, '23514', err.message);
      assert.ok(err.message.includes(`espf.http_handlers.${column}`), err.message);
      assert.doesNotMatch(err.message, /\n/);
      return true;
    });
    assert.deepEqual(await t.db.query(sql`SELECT to_jsonb(h) AS h FROM espf.http_handlers h WHERE handler = 'EventSender'`), before);
  }

  it('defaults: 10 failures, first probe after 5 s, at most 300 s apart', async () => {
    const [h] = await t.db.query(sql`SELECT breaker_failures, probe_delay::float8 AS d, probe_max_delay::float8 AS m FROM espf.http_handlers WHERE handler = 'EventSender'`);
    assert.deepEqual(h, { breaker_failures: 10, d: 5, m: 300 });
  });

  it('refuses non-positive, NaN and infinite values and a maximum below the first delay', async () => {
    for (const v of [0, -1, 1_000_001]) await refused(sql`breaker_failures = ${v}`, 'breaker_failures');
    await refused(sql`breaker_failures = NULL`, 'breaker_failures');
    for (const v of ['0', '-1', 'NaN', 'Infinity', '-Infinity', '604801']) await refused(sql`probe_delay = ${v}::numeric`, 'probe_delay');
    for (const v of ['NaN', 'Infinity', '604801', '4']) await refused(sql`probe_max_delay = ${v}::numeric`, 'probe_max_delay');
    await t.db.query(sql`UPDATE espf.http_handlers SET breaker_failures = 1, probe_delay = 0.05, probe_max_delay = 0.05 WHERE handler = 'EventSender'`);
    await t.db.query(sql`UPDATE espf.http_handlers SET breaker_failures = DEFAULT, probe_delay = DEFAULT, probe_max_delay = DEFAULT WHERE handler = 'EventSender'`);
  });

  it('espf.waiting_page: one handler\'s waiting deliveries in stream order, page after page', async () => {
    await t.db.query(sql`INSERT INTO espf.handlers (name, kind) VALUES ('Other', 'http')`);
    await t.db.query(sql`INSERT INTO espf.http_handlers (handler) VALUES ('Other')`);
    // 30 events; commit positions out of i_event order for some, and other states and handlers mixed in.
    await t.db.query(sql`
      INSERT INTO espf.events (i_event, event_type, variables)
      SELECT 1000 + g, 'Account/Blocked', jsonb_build_object('i_event', 1000 + g, 'i_account', g % 4) FROM generate_series(1, 30) g`);
    await t.db.query(sql`
      INSERT INTO espf.event_deliveries (i_event, handler, state, event_type, order_key, i_account, instance, commit_lsn)
      SELECT 1000 + g, h, CASE WHEN g % 5 = 0 THEN 'DELIVERED' WHEN g % 3 = 0 THEN 'RETRY' ELSE 'PENDING' END,
             'Account/Blocked', 'a:' || (g % 4), g % 4, 'main', ('0/' || to_hex(100 + (g / 3) * 16))::pg_lsn
        FROM generate_series(1, 30) g, unnest(ARRAY['EventSender', 'Other']) h`);
    const want: number[] = (await t.db.query(sql`
      SELECT i_event FROM espf.event_deliveries WHERE handler = 'EventSender' AND state IN ('PENDING', 'RETRY')
       ORDER BY commit_lsn, i_event`)).map((r) => Number(r.i_event));
    assert.equal(want.length, 24);
    const got: number[] = [];
    let cursor: { lsn: string | null; i: number } = { lsn: null, i: 0 };
    for (let pages = 0; pages < 20; pages++) {
      const rows = await t.db.query(sql`SELECT * FROM espf.waiting_page('EventSender', ${cursor.lsn}::pg_lsn, ${cursor.i}, 5)`);
      if (rows.length === 0) break;
      assert.ok(rows.length <= 5);
      for (const r of rows) {
        assert.equal(r.handler, 'EventSender');
        assert.deepEqual(r.variables.i_event, Number(r.i_event));
        got.push(Number(r.i_event));
      }
      const last = rows[rows.length - 1];
      cursor = { lsn: last.commit_lsn, i: Number(last.i_event) };
    }
    assert.deepEqual(got, want);
  });
});

describe('outage: upgrade from the previous release (migrations/0012_outage.sql)', function () {
  it('keeps events, deliveries and settings; adds the breaker columns with their defaults and the target states', async function () {
    this.timeout(60_000);
    const prev = await previousRelease();
    if (!prev) this.skip(); // not a git checkout
    const e = await createEmptyDatabase();
    const db = connect({ connectionString: e.url, poolSize: 2 });
    try {
      await migrate(db, prev!);
      await db.query(sql`UPDATE espf.http_handlers SET url = '{http://127.0.0.1:9/x}', token_rate = 7, max_attempts = 5 WHERE handler = 'EventSender'`);
      await db.query(sql`UPDATE espf.handlers SET enabled = true WHERE name = 'EventSender'`);
      await db.query(sql`INSERT INTO espf.events (i_event, event_type, variables)
                         SELECT g, 'Account/Blocked', jsonb_build_object('i_event', g, 'i_account', g) FROM generate_series(1, 50) g`);
      await db.query(sql`INSERT INTO espf.event_deliveries (i_event, handler, state, event_type, order_key, i_account, instance, commit_lsn, attempts)
                         SELECT g, 'EventSender', CASE WHEN g <= 20 THEN 'DELIVERED' WHEN g <= 30 THEN 'RETRY' ELSE 'PENDING' END,
                                'Account/Blocked', 'a:' || g, g, 'main', ('0/' || to_hex(1000 + g))::pg_lsn, CASE WHEN g <= 30 THEN 1 ELSE 0 END
                           FROM generate_series(1, 50) g`);
      const before = await db.query(sql`SELECT to_jsonb(d) AS d FROM espf.event_deliveries d ORDER BY i_event`);
      const r = await migrate(db);
      assert.ok(r.applied.includes('0012_outage.sql'), `applied ${r.applied.join(', ')}`);
      assert.deepEqual(await db.query(sql`SELECT to_jsonb(d) AS d FROM espf.event_deliveries d ORDER BY i_event`), before);
      const [h] = await db.query(sql`SELECT url, token_rate::float8 AS token_rate, max_attempts, breaker_failures, probe_delay::float8 AS probe_delay, probe_max_delay::float8 AS probe_max_delay
                                       FROM espf.http_handlers WHERE handler = 'EventSender'`);
      assert.deepEqual(h, { url: ['http://127.0.0.1:9/x'], token_rate: 7, max_attempts: 5, breaker_failures: 10, probe_delay: 5, probe_max_delay: 300 });
      const page = await db.query(sql`SELECT i_event FROM espf.waiting_page('EventSender', NULL, 0, 100)`);
      assert.deepEqual(page.map((p) => Number(p.i_event)), Array.from({ length: 30 }, (_, i) => 21 + i));
      const [ts] = await db.query(sql`SELECT count(*)::int AS n FROM espf.target_states`);
      assert.equal(ts.n, 0);
      await assert.rejects(db.query(sql`UPDATE espf.http_handlers SET probe_delay = 'NaN' WHERE handler = 'EventSender'`), /probe_delay/);
      assert.deepEqual((await migrate(db)).applied, [], 'a second migrate applies nothing');
    } finally {
      await db.dispose();
      await e.drop();
    }
  });
});

/** migrations/ and sql/ as they were just before migrations/0012_outage.sql was added (null outside a git checkout). */
async function previousRelease(): Promise<{ migrations: string; repeatable: string } | null> {
  const git = (...args: string[]) => spawnSync('git', ['-C', ROOT, ...args], { encoding: 'utf8' });
  if (git('rev-parse', '--git-dir').status !== 0) return null;
  const added = git('log', '--diff-filter=A', '--format=%H', '-1', '--', 'migrations/0012_outage.sql').stdout.trim();
  const rev = added ? `${added}^` : 'HEAD';
  const dir = await mkdtemp(path.join(os.tmpdir(), 'espf-prev-'));
  const tar = spawnSync('sh', ['-c', `git -C "${ROOT}" archive ${rev} migrations sql | tar -x -C "${dir}"`], { encoding: 'utf8' });
  if (tar.status !== 0) throw new Error(`git archive ${rev}: ${tar.stderr}`);
  await rm(path.join(dir, 'migrations', '0012_outage.sql'), { force: true });
  for (const f of ['025_outage_checks.sql', '410_waiting_pages.sql']) await rm(path.join(dir, 'sql', f), { force: true });
  return { migrations: path.join(dir, 'migrations'), repeatable: path.join(dir, 'sql') };
}

/** An empty database (not the migrated template). */
const createEmptyDatabase = () => createTestDatabase({ empty: true });
