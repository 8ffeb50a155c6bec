// One statement over every account of a large customer (docs/operations.md,
// "Memory"): espf run streams the transaction in parts, so it delivers any
// transaction size under the heap limit it runs with in production
// (bin/espf.js's first line), keeps per-account order, and a kill -9 in the
// middle loses nothing.
import assert from 'node:assert/strict';
import { sql } from '@databases/pg';
import type { EspfProcess } from './support/child.ts';
import { productionNodeArgs } from './support/cli.ts';
import { CountingReceiver } from './support/counting-receiver.ts';
import type { TestDatabase } from './support/database.ts';
import { deliveryFixture } from './support/fixture.ts';
import { eventually } from './support/receiver.ts';
import { addAccounts, seedCustomer } from './support/sender.ts';

/** Accounts of the large customer (ESPF_TEST_LARGE_TX makes it smaller for a quick local run). */
const N = Number(process.env.ESPF_TEST_LARGE_TX ?? 300_000);
/** Accounts that get three events each in the kill -9 transaction. */
const M = Math.round(N / 30);

describe('large transactions: any size with the default heap limit', function () {
  this.timeout(600_000);
  const f = deliveryFixture({
    types: ['Account/Blocked', 'Account/Unblocked'],
    receiver: () => new CountingReceiver().listen(),
    seed: false,
    sender: false,   // each test starts espf run as a child process with the production heap limit
    setup: async ({ t }) => {
      await t.db.query(sql`UPDATE espf.event_types SET enabled = true WHERE name = 'Customer/Blocked'`);
      await t.db.query(sql`INSERT INTO espf.subscriptions VALUES ('CustomerToAccountsDispatcher', 'Customer/Blocked') ON CONFLICT DO NOTHING`);
      await t.db.query(sql`UPDATE espf.handlers SET enabled = true WHERE name = 'CustomerToAccountsDispatcher'`);
    },
  });
  let t: TestDatabase;
  let rx: CountingReceiver;
  let accounts: number[];
  let customer: number;

  before(async function () {
    this.timeout(120_000);
    ({ t, rx } = f);
    const ids = await seedCustomer(t.db, { name: 'IoT fleet' });
    customer = ids.i_customer;
    accounts = await addAccounts(t.db, ids, N, 'fleet-');
  });

  /** Every espf run started here: stopped after each test, whatever happened. */
  const procs: EspfProcess[] = [];
  afterEach(async () => {
    for (const p of procs.splice(0)) if (p.exitCode === undefined) { p.kill('SIGKILL'); await p.exited(); }
  });

  const lastEvent = async (): Promise<number> => Number((await t.db.query(sql`SELECT coalesce(max(i_event), 0) AS n FROM espf.events`))[0].n);
  const delivered = async (after: number): Promise<number> => (await t.db.query(sql`
    SELECT count(*)::int AS n FROM espf.event_deliveries WHERE handler = 'EventSender' AND state = 'DELIVERED' AND i_event > ${after}`))[0].n;
  const run = (): EspfProcess => {
    const p = f.spawn({ nodeArgs: productionNodeArgs() });
    procs.push(p);
    return p;
  };

  it(`one UPDATE of ${N.toLocaleString('en')} accounts is delivered completely, and the slot acknowledged past it`, async () => {
    const proc = run();
    try {
      await proc.streaming();
      const after = await lastEvent();
      await t.db.query(sql`UPDATE billing.account SET blocked = true WHERE i_customer = ${customer}`);
      const [{ lsn }] = await t.db.query(sql`SELECT pg_current_wal_lsn()::text AS lsn`);
      await rx.waitFor(() => rx.distinct('Account/Blocked') >= N, 300_000, `${N} Account/Blocked at the receiver`);
      await eventually(async () => (await delivered(after)) === N, 60_000, `${N} DELIVERED rows`);
      await eventually(async () => (await t.db.query(sql`
        SELECT confirmed_flush_lsn >= ${lsn}::pg_lsn AS ok FROM pg_replication_slots
         WHERE slot_name = 'espf_main' AND database = current_database()`))[0]?.ok, 30_000, 'the slot acknowledged past the transaction');
      assert.equal(proc.exitCode, undefined, `espf run kept running:\n${proc.output.slice(-2000)}`);
      assert.equal(rx.duplicates, 0, 'nothing sent twice');
      assert.deepEqual(rx.outOfOrder, []);
      console.log(`      (espf run peak RSS ${proc.peakRssMb()?.toFixed(0)} MB with ${productionNodeArgs().join(' ')} through tsx)`);
    } finally {
      await proc.stop();
    }
  });

  it('kill -9 in the middle of a large transaction: every event once more at most, per-account order kept', async () => {
    const after = await lastEvent();
    // One transaction: every account switched (blocked after the test above: unblocked), then the first M twice more.
    await t.db.tx(async (tx) => {
      await tx.query(sql`UPDATE billing.account SET blocked = NOT blocked WHERE i_customer = ${customer}`);
      await tx.query(sql`UPDATE billing.account SET blocked = NOT blocked WHERE i_account = ANY(${accounts.slice(0, M)})`);
      await tx.query(sql`UPDATE billing.account SET blocked = NOT blocked WHERE i_account = ANY(${accounts.slice(0, M)})`);
    });
    const total = N + 2 * M;
    const events: { i_event: string }[] = await t.db.query(sql`SELECT i_event FROM espf.events WHERE i_event > ${after}`);
    assert.equal(events.length, total);
    const want = events.map((e) => Number(e.i_event));
    rx.markFrom(after + 1);
    const arrivedNew = (): number => rx.sinceMark;
    const first = run();
    try {
      await first.streaming();
      await eventually(async () => arrivedNew() >= total / 2 || undefined, 300_000, 'half of the transaction delivered');
    } finally {
      first.kill('SIGKILL');
      await first.exited();
    }
    // Requests that reached the receiver before the kill are counted once its connections are closed.
    await eventually(async () => (await rx.connections()) === 0, 10_000, 'the killed process\'s connections closed');
    const atCrash = rx.arrivedEvents();
    const sentAtCrash = want.filter((i) => atCrash.has(i)).length;
    const recorded = new Set((await t.db.query(sql`
      SELECT i_event FROM espf.event_deliveries WHERE handler = 'EventSender' AND state = 'DELIVERED' AND i_event > ${after}`)).map((r) => Number(r.i_event)));
    const unrecorded = new Set(want.filter((i) => atCrash.has(i) && !recorded.has(i)));
    const dupsBefore = new Set(rx.duplicated);
    const second = run();
    try {
      await second.streaming(60_000);
      await rx.waitFor(() => arrivedNew() === total, 300_000, `all ${total} events after the restart`).catch((err: Error) => {
        throw new Error(`${err.message}\n--- espf run after the restart:\n${second.output.slice(-4000)}`);
      });
      await eventually(async () => (await delivered(after)) === total, 60_000, `${total} DELIVERED rows`);
      assert.equal(second.exitCode, undefined, `espf run kept running:\n${second.output.slice(-2000)}`);
    } finally {
      await second.stop();
    }
    assert.ok(sentAtCrash > 0 && sentAtCrash < total, `killed in the middle (${sentAtCrash} of ${total} had arrived)`);
    const sentTwice = [...rx.duplicated].filter((i) => !dupsBefore.has(i));
    const unexpected = sentTwice.filter((i) => !unrecorded.has(i));
    assert.deepEqual(unexpected.slice(0, 10), [], `sent again though recorded DELIVERED before the crash (${sentTwice.length} sent twice, ${unrecorded.size} sent but not recorded at the crash)`);
    assert.deepEqual(rx.outOfOrder, [], 'first arrivals of each account in commit order');
    // The last POST of each account is its newest event: the HSS ends in the right state.
    const newest: { i_account: string; i_event: string }[] = await t.db.query(sql`
      SELECT (variables->>'i_account')::bigint AS i_account, max(i_event) AS i_event FROM espf.events WHERE i_event > ${after} GROUP BY 1`);
    const wrong = newest.filter((r) => rx.lastOf(Number(r.i_account)) !== Number(r.i_event));
    assert.deepEqual(wrong.slice(0, 10), [], `${wrong.length} accounts whose last POST is not their newest event`);
  });

  it(`a customer block dispatched to ${N.toLocaleString('en')} accounts is delivered completely`, async () => {
    const proc = run();
    try {
      await proc.streaming();
      const after = await lastEvent();
      const blockedBefore = rx.distinct('Account/Blocked');
      await t.db.query(sql`UPDATE billing.customer SET blocked = true WHERE i_customer = ${customer}`);
      await rx.waitFor(() => rx.distinct('Account/Blocked') - blockedBefore >= N, 300_000, `${N} dispatched Account/Blocked at the receiver`);
      await eventually(async () => (await delivered(after)) === N, 60_000, `${N} DELIVERED rows`);
      const [{ n }] = await t.db.query(sql`SELECT count(*)::int AS n FROM espf.events WHERE i_event > ${after} AND event_type = 'Account/Blocked'`);
      assert.equal(n, N, 'one Account/Blocked per account of the customer');
      assert.equal(proc.exitCode, undefined, `espf run kept running:\n${proc.output.slice(-2000)}`);
      assert.deepEqual(rx.outOfOrder, []);
    } finally {
      await proc.stop();
    }
  });
});
