import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from '@databases/pg';
import { migrate } from '../src/migrate/migrate.ts';
import { runBackfill, type BackfillProgress } from '../src/rules/backfill.ts';
import { MIN_BATCH } from '../src/rules/backfill-pace.ts';
import { runEspf } from './support/child.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { eventually } from './support/receiver.ts';
import { addAccounts, seedCustomer } from './support/sender.ts';
import { databaseAtPreviousRelease } from './support/upgrade.ts';

/**
 * The pace of `espf backfill` (src/rules/backfill-pace.ts, sql/810_backfill.sql,
 * migrations/0024_backfill_pace.sql): by default it yields to billing; --rate N
 * keeps to N rows a second; --fast runs flat out; --resume keeps the pace.
 */
describe('espf backfill: its pace', function () {
  this.timeout(120_000);
  let t: TestDatabase;
  let home: string;
  let ids: { i_product: number; i_customer: number };
  const q = (query: ReturnType<typeof sql>) => t.db.query(query);
  const env = () => ({ DATABASE_URL: t.url, ESPF_HOME: home });

  before(async () => {
    t = await createTestDatabase();
    home = await mkdtemp(path.join(os.tmpdir(), 'espf-home-'));
    ids = await seedCustomer(t.db);
    await q(sql`INSERT INTO espf.event_types (name) VALUES ('Account/State')`);
    await q(sql`INSERT INTO espf.event_rules (name, event_type, source, operations, variables, i_env)
      VALUES ('Account/State', 'Account/State', 'billing.account', '{INSERT}',
              'jsonb_build_object(''i_account'', NEW.i_account, ''blocked'', NEW.blocked)', 'NEW.i_env')`);
  });
  after(async () => {
    await t.drop();
    await rm(home, { recursive: true, force: true });
  });

  /** `n` accounts `<prefix>…` that no event was written for yet; the --where that picks them. */
  async function accounts(n: number, prefix: string): Promise<{ keys: number[]; where: string }> {
    await q(sql`UPDATE espf.event_types SET enabled = false WHERE name = 'Account/State'`);
    const keys = await addAccounts(t.db, ids, n, prefix);
    await q(sql`UPDATE espf.event_types SET enabled = true WHERE name = 'Account/State'`);
    return { keys, where: `id LIKE '${prefix}%'` };
  }
  /** Events written for the accounts `<prefix>…`, and for how many distinct ones. */
  async function written(prefix: string): Promise<{ events: number; accounts: number }> {
    const [c] = await q(sql`
      SELECT count(*)::int AS events, count(DISTINCT (e.variables->>'i_account'))::int AS accounts
        FROM espf.events e JOIN billing.account a ON a.i_account = (e.variables->>'i_account')::bigint
       WHERE e.event_type = 'Account/State' AND a.id LIKE ${`${prefix}%`}`);
    return c;
  }

  it('refuses bad --rate values and --rate with --fast on the command line, in one line; the database refuses a bad pace', async () => {
    await q(sql`UPDATE espf.event_types SET enabled = true WHERE name = 'Account/State'`);
    for (const [args, re] of [
      [['--rate', '0'], /^espf: --rate '0': use a whole number of rows per second from 1 to 10000000\n$/],
      [['--rate', '2.5'], /^espf: --rate '2\.5': use a whole number of rows per second from 1 to 10000000\n$/],
      [['--rate', '20000000'], /^espf: --rate '20000000': use a whole number of rows per second from 1 to 10000000\n$/],
      [['--rate', '100', '--fast'], /^espf: --rate and --fast: give one of them\n$/],
    ] as const) {
      const r = await runEspf(['backfill', 'Account/State', '--all-handlers', ...args], env());
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, re);
    }
    await assert.rejects(q(sql`SELECT espf.start_backfill('Account/State', NULL, 10, NULL, 'slow')`),
      (e: { code?: string; message: string }) => e.code === '22023' && /unknown pace 'slow'/.test(e.message));
    await assert.rejects(q(sql`SELECT espf.start_backfill('Account/State', NULL, 10, NULL, 'fast', 100)`),
      (e: { code?: string; message: string }) => e.code === '22023' && /goes with the pace rate only, not fast with rate 100/.test(e.message));
    await assert.rejects(q(sql`SELECT espf.start_backfill('Account/State', NULL, 10, NULL, 'rate')`), (e: { code?: string }) => e.code === '22023');
    const [n] = await q(sql`SELECT count(*)::int AS n FROM espf.backfills`);
    assert.equal(n.n, 0, 'nothing recorded');
  });

  it('--rate N: never more than N rows a second over any stretch of the run (plus one batch), and every row once', async () => {
    const rate = 800;
    const { where } = await accounts(3000, 'rate-');
    const seen: { at: number; rows: number; p: BackfillProgress }[] = [];
    const start = Date.now();
    const done = await runBackfill(t.db, {
      rule: 'Account/State', allHandlers: true, where, resume: false, pace: { kind: 'rate', rowsPerS: rate },
      onProgress: (p) => { seen.push({ at: Date.now(), rows: p.rowsDone, p }); },
    });
    seen.unshift({ at: start, rows: 0, p: seen[0]!.p });
    assert.equal(done.rowsDone, 3000);
    assert.deepEqual(await written('rate-'), { events: 3000, accounts: 3000 });
    const batch = Math.ceil(rate / 10);
    assert.equal(seen[1]!.p.pace.batchSize, batch, 'a tenth of a second of rows a batch');
    assert.equal(seen[1]!.p.pace.reason, `paced at --rate ${rate}`);
    // Rows done by the end of a batch, over the time since the end of an earlier one (or the start).
    for (let i = 0; i < seen.length; i++) {
      for (let j = i + 1; j < seen.length; j++) {
        const s = (seen[j]!.at - seen[i]!.at) / 1000;
        const rows = seen[j]!.rows - seen[i]!.rows;
        assert.ok(rows <= rate * s * 1.5 + batch, `${rows} rows in ${s} s`);
      }
    }
    const [b] = await q(sql`SELECT pace, rate_rows_s FROM espf.backfills WHERE where_sql = ${where}`);
    assert.deepEqual(b, { pace: 'rate', rate_rows_s: rate });
  });

  it('yields: a batch that waits for a billing transaction holding a row shrinks the batches and pauses; every row once', async () => {
    const { keys, where } = await accounts(1500, 'yield-');
    const held = keys[550]!;  // in the sixth batch of 100
    const seen: BackfillProgress[] = [];
    let backfill: Promise<BackfillProgress> | undefined;
    await t.db.tx(async (tx) => {
      // Billing holds one account of a later batch until the backfill has waited a while for it.
      await tx.query(sql`SELECT 1 FROM billing.account WHERE i_account = ${held} FOR UPDATE`);
      backfill = runBackfill(t.db, { rule: 'Account/State', allHandlers: true, where, batchSize: 100, resume: false, onProgress: (p) => { seen.push(p); } });
      await eventually(async () => {
        const [w] = await t.db.query(sql`SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%backfill_batch%'`);
        return w.n === 1 || undefined;
      }, 30_000, 'the batch to wait for the row');
      await tx.query(sql`SELECT pg_sleep(1)`);  // the contention: billing keeps the row a second longer
    });
    const done = await backfill!;
    assert.equal(done.rowsDone, 1500);
    assert.deepEqual(await written('yield-'), { events: 1500, accounts: 1500 });
    const i = seen.findIndex((p) => p.rowsDone >= 600);
    const before = seen[i - 1]!.pace;
    const after = seen[i]!.pace;
    assert.equal(seen[i]!.rowsDone, 600, 'the batch that waited');
    assert.equal(before.batchSize, 100);
    assert.equal(after.batchSize, Math.max(MIN_BATCH, 50), 'the batch size halves');
    assert.ok(after.duty < before.duty, `it works less of the time (${before.duty} → ${after.duty})`);
    assert.ok(after.pauseMs > 0, 'and pauses');
    assert.ok(after.slowdown >= 3, `the batch took ${after.slowdown + 1} times its idle latency`);
    assert.match(after.reason, /^yielding: batch latency \+\d+% over idle.*; working \d+% of the time, batches of 50 rows$/);
  });

  it('--resume keeps the pace it was started with and refuses another; --fast runs batches back to back', async () => {
    const { where } = await accounts(600, 'resume-');
    let batches = 0;
    await assert.rejects(runBackfill(t.db, {
      rule: 'Account/State', allHandlers: true, where, batchSize: 100, resume: false, pace: { kind: 'rate', rowsPerS: 5000 },
      stopRequested: () => batches >= 2, onProgress: () => { batches++; },
    }), /interrupted at key/);
    const refused = await runEspf(['backfill', 'Account/State', '--resume', '--fast'], env());
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /runs with --all-handlers --where "?'?id LIKE .*--batch-size 100 --rate 5000, not --fast: resume it without options, or with the same ones\n$/);
    const resumed = await runEspf(['backfill', 'Account/State', '--resume', '--rate', '5000'], env());
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, /done, 600 rows, 600 events/);
    assert.deepEqual(await written('resume-'), { events: 600, accounts: 600 });

    const fast = await accounts(300, 'fast-');
    const reasons: string[] = [];
    const pauses: number[] = [];
    await runBackfill(t.db, {
      rule: 'Account/State', allHandlers: true, where: fast.where, batchSize: 100, resume: false, pace: { kind: 'fast' },
      onProgress: (p) => { reasons.push(p.pace.reason); pauses.push(p.pace.pauseMs); },
    });
    assert.deepEqual([...new Set(reasons)], ['full speed (--fast)']);
    assert.deepEqual([...new Set(pauses)], [0]);
    const [b] = await q(sql`SELECT pace, rate_rows_s FROM espf.backfills WHERE where_sql = ${fast.where}`);
    assert.deepEqual(b, { pace: 'fast', rate_rows_s: null });
  });

  it('prints how fast it goes and why on each progress line', async () => {
    const { where } = await accounts(400, 'line-');
    const r = await runEspf(['backfill', 'Account/State', '--all-handlers', '--where', where, '--batch-size', '10', '--rate', '200'], env());
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^backfill \d+ Account\/State: \d+\/400 rows \(\d+%\), \d+ events, last key \d+, [\d,]+ rows\/s, paced at --rate 200$/m);
    assert.match(r.stdout, /done, 400 rows, 400 events/);
  });
});

describe('espf backfill: upgrade from the previous release (migrations/0024_backfill_pace.sql)', function () {
  it('keeps events, deliveries and an unfinished backfill, which resumes at the default pace; rewrites no table', async function () {
    this.timeout(90_000);
    const old = await databaseAtPreviousRelease('0024_backfill_pace.sql');
    if (!old) this.skip(); // not a git checkout
    const { db } = old!;
    try {
      await db.query(sql`INSERT INTO espf.events (i_event, event_type, variables)
                         SELECT g, 'Account/Blocked', jsonb_build_object('i_event', g, 'i_account', g) FROM generate_series(1, 50) g`);
      await db.query(sql`SELECT setval('espf.events_i_event_seq', 50)`);
      await db.query(sql`INSERT INTO espf.event_deliveries (i_event, handler, state, event_type, order_key, i_account, instance, commit_lsn, attempts)
                         SELECT g, 'EventSender', CASE WHEN g <= 20 THEN 'DELIVERED' ELSE 'PENDING' END,
                                'Account/Blocked', 'a:' || g, g, 'main', ('0/' || to_hex(1000 + g))::pg_lsn, CASE WHEN g <= 20 THEN 1 ELSE 0 END
                           FROM generate_series(1, 50) g`);
      const [c] = await db.query(sql`INSERT INTO billing.customer (name) VALUES ('Up') RETURNING i_customer`);
      const [p] = await db.query(sql`INSERT INTO billing.product (name) VALUES ('Up') RETURNING i_product`);
      await db.query(sql`INSERT INTO billing.account (id, i_customer, i_product) SELECT 'up-' || g, ${c.i_customer}, ${p.i_product} FROM generate_series(1, 20) g`);
      await db.query(sql`UPDATE espf.event_types SET enabled = true WHERE name = 'Account/New'`);
      const [bf] = await db.query(sql`INSERT INTO espf.backfills (rule, event_type, source, key_column, batch_size, state, rows_total)
                                      VALUES ('Account/New', 'Account/New', 'billing.account', 'i_account', 10, 'interrupted', 20) RETURNING id`);
      const events = await db.query(sql`SELECT to_jsonb(e) AS e FROM espf.events e ORDER BY i_event`);
      const deliveries = await db.query(sql`SELECT to_jsonb(d) AS d FROM espf.event_deliveries d ORDER BY i_event`);
      const files = async () => db.query(sql`SELECT relname, pg_relation_filenode(oid::regclass) AS f FROM pg_class WHERE oid IN ('espf.events'::regclass, 'espf.backfills'::regclass) ORDER BY relname`);
      const before = await files();
      const r = await migrate(db);
      assert.ok(r.applied.includes('0024_backfill_pace.sql'), `applied ${r.applied.join(', ')}`);
      assert.deepEqual(await files(), before, 'no table rewritten');
      assert.deepEqual(await db.query(sql`SELECT to_jsonb(e) AS e FROM espf.events e ORDER BY i_event`), events);
      assert.deepEqual(await db.query(sql`SELECT to_jsonb(d) AS d FROM espf.event_deliveries d ORDER BY i_event`), deliveries);
      const [stored] = await db.query(sql`SELECT pace, rate_rows_s FROM espf.backfills WHERE id = ${bf.id}`);
      assert.deepEqual(stored, { pace: null, rate_rows_s: null });
      // A pace the old row cannot have: refused by the table.
      await assert.rejects(db.query(sql`UPDATE espf.backfills SET rate_rows_s = 10 WHERE id = ${bf.id}`), (e: { code?: string }) => e.code === '23514');
      // Started without a pace: it resumes at the default one (and refuses --fast).
      await assert.rejects(runBackfill(db, { rule: 'Account/New', resume: true, pace: { kind: 'fast' } }), /runs with --all-handlers --batch-size 10, not --fast/);
      const reasons: string[] = [];
      const done = await runBackfill(db, { rule: 'Account/New', resume: true, onProgress: (pr) => { reasons.push(pr.pace.reason); } });
      assert.equal(done.id, Number(bf.id));
      assert.equal(done.events, 20);
      assert.ok(reasons.every((x) => /^(yielding|full speed: billing)/.test(x)), reasons.join(' | '));
      assert.deepEqual((await migrate(db)).applied, [], 'a second migrate applies nothing');
    } finally {
      await old!.dispose();
    }
  });
});
