import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from '@databases/pg';
import { EspfError } from '../src/errors.ts';
import { runBackfill } from '../src/rules/backfill.ts';
import { runEspf } from './support/child.ts';
import { spawnEspf } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { eventually, TestReceiver } from './support/receiver.ts';
import { addAccounts, configureEventSender, seedCustomer, startSender } from './support/sender.ts';

/**
 * `espf backfill` (src/rules/backfill.ts, sql/810_backfill.sql): a rule's event for
 * existing rows, in short locking batches, resumable; never an account's snapshot
 * after a later live event of the account.
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
});
