import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from '@databases/pg';
import { EspfError } from '../src/errors.ts';
import { migrate } from '../src/migrate/migrate.ts';
import { runBackfill, type BackfillProgress } from '../src/rules/backfill.ts';
import { DUTY_DECREASE, DUTY_MIN, MIN_BATCH } from '../src/rules/backfill-pace.ts';
import { runEspf } from './support/child.ts';
import { spawnEspf } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { eventually, TestReceiver } from './support/receiver.ts';
import { addAccounts, configureEventSender, seedCustomer, startSender } from './support/sender.ts';
import { seedUnfinishedBackfill } from './support/backfill-upgrade.ts';
import { databaseAtPreviousRelease } from './support/upgrade.ts';

/**
 * `espf backfill` (src/rules/backfill.ts, sql/810_backfill.sql): a rule's event for
 * existing rows, in short locking batches at a pace that yields to billing,
 * resumable; never an account's snapshot after a later live event of the account.
 */
describe('espf backfill', function () {
  this.timeout(180_000);
  // Not test/support/fixture.ts: accounts are written while their type is off (the
  // backfill is what sends them), and one test alone streams: it configures
  // EventSender and starts its receiver and sender after its writes.
  let t: TestDatabase;
  let home: string;
  let ids: { i_product: number; i_customer: number };
  const q = (query: ReturnType<typeof sql>) => t.db.query(query);
  const env = () => ({ DATABASE_URL: t.url, ESPF_HOME: home });

  before(async () => {
    t = await createTestDatabase();
    home = await mkdtemp(path.join(os.tmpdir(), 'espf-home-'));
    ids = await seedCustomer(t.db);
    // A snapshot type of the account's block state, as a local rule.
    await q(sql`INSERT INTO espf.event_types (name) VALUES ('Account/State')`);
    await q(sql`INSERT INTO espf.event_rules (name, event_type, source, operations, variables, i_env)
      VALUES ('Account/State', 'Account/State', 'billing.account', '{INSERT}',
              'jsonb_build_object(''i_account'', NEW.i_account, ''blocked'', NEW.blocked)', 'NEW.i_env')`);
  });
  after(async () => {
    await t.drop();
    await rm(home, { recursive: true, force: true });
  });

  const refusedWith = (re: RegExp) => (err: unknown) => {
    assert.ok(err instanceof Error, String(err));
    assert.match(err.message, re);
    assert.doesNotMatch(err.message, /\n/);
    return true;
  };

  it('refuses a disabled type, an unknown rule, a DELETE rule, and --resume with nothing to resume; records nothing', async () => {
    await addAccounts(t.db, ids, 10, 'r-');
    await assert.rejects(runBackfill(t.db, { rule: 'Account/State', batchSize: 100, resume: false }),
      refusedWith(/rule 'Account\/State' produces Account\/State, which is disabled: enable it first \(espf type enable Account\/State\)/));
    await assert.rejects(runBackfill(t.db, { rule: 'Nope', batchSize: 100, resume: false }), refusedWith(/unknown rule 'Nope'/));
    await q(sql`UPDATE espf.event_types SET enabled = true WHERE name = 'Subscriber/Deleted'`);
    await assert.rejects(runBackfill(t.db, { rule: 'Subscriber/Deleted', batchSize: 100, resume: false }), refusedWith(/is a DELETE rule/));
    await assert.rejects(runBackfill(t.db, { rule: 'Account/State', batchSize: 100, resume: true }),
      (err: unknown) => err instanceof EspfError && err.code === 'ESPF_BACKFILL_REFUSED' && /no unfinished backfill/.test(err.message));
    const [n] = await q(sql`SELECT count(*)::int AS n FROM espf.backfills`);
    assert.equal(n.n, 0);
    const r = await runEspf(['backfill', 'Account/State'], { DATABASE_URL: t.url, ESPF_HOME: home });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^espf: backfill: rule 'Account\/State' produces Account\/State, which is disabled: enable it first \(espf type enable Account\/State\)\n$/);
    const bad = await runEspf(['backfill', 'Account/State', '--batch-size', '0'], { DATABASE_URL: t.url, ESPF_HOME: home });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^espf: --batch-size '0': use a whole number from 1 to 100000\n$/);
    await q(sql`DELETE FROM billing.account WHERE id LIKE 'r-%'`);
  });

  it('10,000 accounts while they are blocked and unblocked: every snapshot once, per-account order at the receiver', async () => {
    const accounts = await addAccounts(t.db, ids, 10_000, 'bf-');
    const rx = await new TestReceiver().listen();
    await configureEventSender(t.db, rx.url, ['Account/State', 'Account/Blocked', 'Account/Unblocked']);
    const s = await startSender(t.db, t.url);
    try {
      let stopWrites = false;
      let writes = 0;
      const writer = (async () => {
        // Billing writes keep going while the backfill runs: toggle random accounts.
        while (!stopWrites) {
          const a = accounts[Math.floor(Math.random() * accounts.length)]!;
          await q(sql`UPDATE billing.account SET blocked = NOT blocked WHERE i_account = ${a}`);
          writes++;
        }
      })();
      const progress: number[] = [];
      const done = await runBackfill(t.db, { rule: 'Account/State', batchSize: 250, resume: false, allHandlers: true, onProgress: (p) => progress.push(p.rowsDone) });
      stopWrites = true;
      await writer;
      assert.equal(done.rowsDone, 10_000);
      assert.equal(done.events, 10_000);
      assert.ok(progress.length >= 40, 'one progress report per batch');
      assert.ok(writes > 20, `billing writes kept going during the backfill (${writes})`);
      const [{ n: total }] = await q(sql`SELECT count(*)::int AS n FROM espf.events
        WHERE event_type IN ('Account/State', 'Account/Blocked', 'Account/Unblocked')`);
      await rx.waitFor(() => rx.received.length >= total, 120_000, 'every event at the receiver');
      // Replay each account's events in arrival order.
      const state = new Map<number, { blocked?: boolean; last: number; snapshots: number }>();
      for (const r of rx.received) {
        const v = r.json.variables as { i_account: number; i_event: number; blocked?: boolean };
        const st = state.get(v.i_account) ?? { last: 0, snapshots: 0 };
        assert.ok(v.i_event > st.last, `account ${v.i_account}: i_event ${v.i_event} after ${st.last}`);
        st.last = v.i_event;
        if (r.json.event_type === 'Account/State') {
          st.snapshots++;
          if (st.blocked !== undefined) assert.equal(v.blocked, st.blocked, `account ${v.i_account}: a snapshot behind a live event it did not see`);
          st.blocked = v.blocked;
        } else {
          const to = r.json.event_type === 'Account/Blocked';
          if (st.blocked !== undefined) assert.equal(st.blocked, !to, `account ${v.i_account}: ${r.json.event_type} from the wrong state`);
          st.blocked = to;
        }
        state.set(v.i_account, st);
      }
      const finals = await q(sql`SELECT i_account, blocked FROM billing.account WHERE id LIKE 'bf-%'`);
      for (const f of finals) {
        const st = state.get(Number(f.i_account));
        assert.ok(st, `account ${f.i_account} got nothing`);
        assert.equal(st.snapshots, 1, `account ${f.i_account}: one snapshot`);
        assert.equal(st.blocked, f.blocked, `account ${f.i_account}: the receiver ends in the account's state`);
      }
      const [b] = await q(sql`SELECT state, rows_done::int, rows_total::int, events::int FROM espf.backfills WHERE id = ${done.id}`);
      assert.deepEqual(b, { state: 'done', rows_done: 10_000, rows_total: 10_000, events: 10_000 });
    } finally {
      await s.stop();
      await rx.close();
      await q(sql`UPDATE espf.handlers SET enabled = false WHERE name = 'EventSender'`);
    }
  });

  it('killed with SIGKILL mid-way and resumed: every row emitted exactly once; espf status shows it', async () => {
    // Inserted while the type is off (its rule fires on INSERT), then switched on to backfill.
    await q(sql`UPDATE espf.event_types SET enabled = false WHERE name = 'Account/State'`);
    await addAccounts(t.db, ids, 10_000, 'kill-');
    await q(sql`UPDATE espf.event_types SET enabled = true WHERE name = 'Account/State'`);
    const where = "id LIKE 'kill-%'";
    const child = spawnEspf(['backfill', 'Account/State', '--all-handlers', '--where', where, '--batch-size', '50'], { env: { DATABASE_URL: t.url, ESPF_HOME: home } });
    let out = '';
    child.stdout!.on('data', (b: Buffer) => { out += b.toString(); });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await eventually(async () => {
      const [r] = await q(sql`SELECT rows_done FROM espf.backfills WHERE where_sql = ${where}`);
      return r && Number(r.rows_done) >= 1000;
    }, 60_000, 'the backfill to get going');
    child.kill('SIGKILL');
    await exited;
    const [mid] = await q(sql`SELECT id, state, rows_done::int FROM espf.backfills WHERE where_sql = ${where}`);
    assert.equal(mid.state, 'running');
    assert.ok(mid.rows_done < 10_000, `killed before the end (${mid.rows_done} rows done)`);

    // Without --resume: refused, naming --resume.
    const again = await runEspf(['backfill', 'Account/State'], { DATABASE_URL: t.url, ESPF_HOME: home });
    assert.equal(again.code, 1);
    assert.match(again.stderr, /stopped at key \d+ \(\d+ of 10000 rows\): espf backfill Account\/State --resume goes on from there/);

    const resumed = await runEspf(['backfill', 'Account/State', '--resume'], { DATABASE_URL: t.url, ESPF_HOME: home });
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, new RegExp(`backfill ${mid.id} Account/State: done, 10000 rows, 10000 events`));
    assert.match(out, /rows \(\d+%\)/, 'progress lines when stdout is not a terminal');
    const [counts] = await q(sql`
      SELECT count(*)::int AS events, count(DISTINCT (e.variables->>'i_account'))::int AS accounts
        FROM espf.events e JOIN billing.account a ON a.i_account = (e.variables->>'i_account')::bigint
       WHERE e.event_type = 'Account/State' AND a.id LIKE 'kill-%'`);
    assert.deepEqual(counts, { events: 10_000, accounts: 10_000 });
    const status = await runEspf(['status'], { DATABASE_URL: t.url, ESPF_HOME: home });
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /Backfills, latest 10 \(espf\.report_backfills\)/);
    assert.match(status.stdout, new RegExp(`^${mid.id}\\s+Account/State\\s+done\\s+10000\\s+10000\\s+10000`, 'm'));
  });

  // Its pace (src/rules/backfill-pace.ts, migrations/0024_backfill_pace.sql): by default it
  // yields to billing; --rate N keeps to N rows a second; --fast runs flat out; --resume keeps it.
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
    const backfills = async () => Number((await q(sql`SELECT count(*) AS n FROM espf.backfills`))[0].n);
    const before = await backfills();
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
    assert.equal(await backfills(), before, 'nothing recorded');
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
    // It works less of the time (or as little as it may already: a loaded machine slows the batches before).
    assert.ok(after.duty <= Math.max(DUTY_MIN, before.duty * DUTY_DECREASE) + 1e-9, `it works less of the time (${before.duty} → ${after.duty})`);
    assert.ok(after.pauseMs > 0, 'and pauses');
    assert.ok(after.slowdown >= 3, `the batch took ${after.slowdown + 1} times its idle latency`);
    assert.match(after.reason, /^yielding: batch latency \+\d+% over idle.*; working \d+% of the time; it waited for row locks: batches of 50 rows$/);
    assert.ok(seen.slice(i + 1).some((p) => p.pace.batchSize === 100), 'batches that did not wait: back to 100');
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
      const bf = await seedUnfinishedBackfill(db);
      const r = await migrate(db);
      assert.ok(r.applied.includes('0024_backfill_pace.sql'), `applied ${r.applied.join(', ')}`);
      assert.deepEqual(await bf.files(), bf.filesBefore, 'no table rewritten');
      assert.deepEqual(await db.query(sql`SELECT to_jsonb(e) AS e FROM espf.events e ORDER BY i_event`), bf.events);
      assert.deepEqual(await db.query(sql`SELECT to_jsonb(d) AS d FROM espf.event_deliveries d ORDER BY i_event`), bf.deliveries);
      const [stored] = await db.query(sql`SELECT pace, rate_rows_s FROM espf.backfills WHERE id = ${bf.id}`);
      assert.deepEqual(stored, { pace: null, rate_rows_s: null });
      // A pace the old row cannot have: refused by the table.
      await assert.rejects(db.query(sql`UPDATE espf.backfills SET rate_rows_s = 10 WHERE id = ${bf.id}`), (e: { code?: string }) => e.code === '23514');
      // Started without a pace: it resumes at the default one (and refuses --fast).
      await assert.rejects(runBackfill(db, { rule: 'Account/New', resume: true, pace: { kind: 'fast' } }), /runs with --all-handlers --batch-size 10, not --fast/);
      const reasons: string[] = [];
      const done = await runBackfill(db, { rule: 'Account/New', resume: true, onProgress: (pr) => { reasons.push(pr.pace.reason); } });
      assert.equal(done.id, bf.id);
      assert.equal(done.events, 20);
      assert.ok(reasons.every((x) => /^(yielding|full speed: billing)/.test(x)), reasons.join(' | '));
      assert.deepEqual((await migrate(db)).applied, [], 'a second migrate applies nothing');
    } finally {
      await old!.dispose();
    }
  });
});
