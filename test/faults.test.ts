import assert from 'node:assert/strict';
import { sql } from '@databases/pg';
import { restartCluster } from '../src/db/cluster.ts';
import { testServer } from './support/cluster.ts';
import type { TestDatabase } from './support/database.ts';
import { deliveryFixture } from './support/fixture.ts';
import { EspfProcess } from './support/child.ts';
import { eventually, TestReceiver } from './support/receiver.ts';
import { addAccounts, configApplied, startSender } from './support/sender.ts';

type Ids = { i_product: number; i_customer: number };

async function deliveryOf(t: TestDatabase, iAccount: number, type: string) {
  const [d] = await t.db.query(sql`
    SELECT d.*, s.status AS account_status, s.attempts AS status_attempts FROM espf.event_deliveries d
      JOIN espf.events e USING (i_event)
      LEFT JOIN espf.account_provisioning_statuses s ON s.i_account = d.i_account AND s.handler = d.handler
     WHERE e.event_type = ${type} AND d.i_account = ${iAccount} AND d.handler = 'EventSender'`);
  return d;
}

describe('faults: retries, failure for good, and order', function () {
  const f = deliveryFixture({ types: ['Account/New', 'Account/Blocked', 'Account/Unblocked'], settings: { max_attempts: 3 } });

  it('FAILED after max_attempts in both status tables, while other accounts are unaffected; then the account goes on', async () => {
    const [bad, good] = await addAccounts(f.t.db, f.ids, 2, 'fail-');
    await f.rx.waitFor(() => f.rx.received.filter((r) => String(r.json.variables.id).startsWith('fail-')).length >= 2);
    let attemptsOnBad = 0;
    f.rx.respond = (r) => {
      if (r.json.variables.i_account === bad && r.json.event_type === 'Account/Blocked') { attemptsOnBad++; return { status: 500, body: 'HSS down' }; }
      return { status: 200 };
    };
    await f.t.db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account IN (${bad}, ${good})`);
    await f.t.db.query(sql`UPDATE billing.account SET blocked = false WHERE i_account = ${bad}`);
    const failed = await eventually(async () => {
      const d = await deliveryOf(f.t, bad!, 'Account/Blocked');
      return d?.state === 'FAILED' ? d : undefined;
    }, 15_000, 'FAILED');
    assert.equal(failed.attempts, 3);
    assert.equal(attemptsOnBad, 3);
    assert.equal(failed.last_http_status, 500);
    assert.match(failed.last_error, /HTTP 500: HSS down/);
    const goodRow = await eventually(async () => (await deliveryOf(f.t, good!, 'Account/Blocked'))?.state === 'DELIVERED' || undefined);
    assert.ok(goodRow);
    // The account's next event (Unblocked) proceeds once Blocked failed for good, and its status moves on.
    const unblocked = await eventually(async () => {
      const d = await deliveryOf(f.t, bad!, 'Account/Unblocked');
      return d?.state === 'DELIVERED' ? d : undefined;
    });
    assert.ok(unblocked.first_attempt_at >= failed.finished_at, 'Unblocked was first sent after Blocked failed for good');
    const [st] = await f.t.db.query(sql`SELECT status, event_type FROM espf.account_provisioning_statuses WHERE i_account = ${bad} AND handler = 'EventSender'`);
    assert.deepEqual(st, { status: 'OK', event_type: 'Account/Unblocked' });
    f.rx.respond = () => ({ status: 200 });
  });

  it("while an account's event is failing its later events wait; other accounts go on; order is kept", async () => {
    await f.t.db.query(sql`UPDATE espf.http_handlers SET max_attempts = 1000 WHERE handler = 'EventSender'`);
    await configApplied(f.t.db, f.run.sender);
    const [a, b] = await addAccounts(f.t.db, f.ids, 2, 'order-');
    await f.rx.waitFor(() => f.rx.received.filter((r) => String(r.json.variables.id).startsWith('order-')).length >= 2);
    let failing = true;
    let failures = 0;
    f.rx.respond = (r) => {
      if (r.json.variables.i_account === a && failing) { failures++; return { status: 503 }; }
      return { status: 200 };
    };
    const start = f.rx.received.length;
    for (let i = 0; i < 3; i++) {
      await f.t.db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account IN (${a}, ${b})`);
      await f.t.db.query(sql`UPDATE billing.account SET blocked = false WHERE i_account IN (${a}, ${b})`);
    }
    const forA = () => f.rx.received.slice(start).filter((r) => r.json.variables.i_account === a);
    const forB = () => f.rx.received.slice(start).filter((r) => r.json.variables.i_account === b);
    // b goes on while a keeps failing; a's later events wait (PENDING) behind its first.
    await f.rx.waitFor(() => forB().length >= 6, 15_000, "six events of account b");
    await eventually(async () => failures >= 2 || undefined, 10_000, 'a failing twice');
    assert.equal(forA().length, 0, 'nothing of account a got through while its first event failed');
    const waiting = await f.t.db.query(sql`SELECT state FROM espf.event_deliveries WHERE i_account = ${a} AND state IN ('RETRY', 'PENDING') ORDER BY i_event`);
    assert.equal(waiting[0]?.state, 'RETRY');
    failing = false;
    await f.rx.waitFor(() => forA().length >= 6, 15_000, 'six events of account a');
    const seq = (xs: typeof f.rx.received) => xs.map((r) => r.json.variables.i_event);
    const sorted = (xs: number[]) => [...xs].sort((x, y) => x - y);
    assert.deepEqual(seq(forA()), sorted(seq(forA())), 'account a: commit order, retries included');
    assert.deepEqual(seq(forB()), sorted(seq(forB())), 'account b: commit order');
    f.rx.respond = () => ({ status: 200 });
  });

  it('a receiver that sleeps past request_timeout: the attempt fails with a clear reason and is retried', async () => {
    await f.t.db.query(sql`UPDATE espf.http_handlers SET request_timeout = 1 WHERE handler = 'EventSender'`);
    await configApplied(f.t.db, f.run.sender);
    const [acc] = await addAccounts(f.t.db, f.ids, 1, 'slow-');
    let first = true;
    f.rx.respond = (r) => {
      if (r.json.variables.i_account === acc && r.json.event_type === 'Account/Blocked' && first) { first = false; return 'hang'; }
      return { status: 200 };
    };
    await f.t.db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account = ${acc}`);
    const d = await eventually(async () => {
      const x = await deliveryOf(f.t, acc!, 'Account/Blocked');
      return x?.state === 'DELIVERED' ? x : undefined;
    }, 10_000, 'delivered after a timeout');
    assert.equal(d.attempts, 2);
    await f.run.stop();
    const { readFileSync } = await import('node:fs');
    const lines = readFileSync(`${f.run.logDir}/provisioning.log`, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const timeout = lines.find((l) => l.i_event === d.i_event && l.status === null);
    assert.ok(timeout, 'a log line for the timed-out attempt');
    assert.match(timeout.error, /timeout.*request_timeout \(1 s\)/);
    f.run = await f.startSender();
    f.rx.respond = () => ({ status: 200 });
  });
});

describe('faults: receiver down, restarts, crashes and failover', function () {
  const f = deliveryFixture({ types: ['Account/New', 'Account/Blocked'], settings: { max_attempts: 1000 }, sender: false });

  it('a receiver closed and reopened on the same port loses nothing, in order', async () => {
    const run = await startSender(f.t.db, f.t.url);
    try {
      const port = f.rx.port;
      await f.rx.close();
      const accounts = await addAccounts(f.t.db, f.ids, 20, 'down-');
      // Everything is recorded as waiting, so the slot moves on while the receiver is down.
      await eventually(async () => {
        const [r] = await f.t.db.query(sql`SELECT count(*)::int AS n FROM espf.event_deliveries WHERE state IN ('RETRY', 'PENDING') AND i_account = ANY(${accounts})`);
        return r.n === 20;
      }, 10_000, 'twenty waiting deliveries');
      f.rx = await new TestReceiver().listen(port);
      await f.rx.waitFor(() => accounts.every((a) => f.rx.received.some((r) => r.json.variables.i_account === a)), 15_000, 'all twenty');
      await eventually(async () => {
        const [r] = await f.t.db.query(sql`SELECT count(*)::int AS n FROM espf.event_deliveries WHERE state = 'DELIVERED' AND i_account = ANY(${accounts})`);
        return r.n === 20;
      });
    } finally {
      await run.stop();
    }
  });

  it('a restart resumes where it stopped: waiting deliveries and the stream', async () => {
    f.rx.respond = () => ({ status: 500 });
    let run = await startSender(f.t.db, f.t.url);
    const accounts = await addAccounts(f.t.db, f.ids, 5, 'resume-');
    await eventually(async () => {
      const [r] = await f.t.db.query(sql`SELECT count(*)::int AS n FROM espf.event_deliveries WHERE state = 'RETRY' AND i_account = ANY(${accounts})`);
      return r.n === 5;
    });
    await run.stop();
    // Committed while nothing runs: comes from the slot at the next start.
    const later = await addAccounts(f.t.db, f.ids, 5, 'resume-later-');
    f.rx.respond = () => ({ status: 200 });
    const before = f.rx.received.length;
    run = await startSender(f.t.db, f.t.url);
    try {
      await f.rx.waitFor(() => [...accounts, ...later].every((a) => f.rx.received.slice(before).some((r) => r.json.variables.i_account === a)), 15_000, 'all ten');
    } finally {
      await run.stop();
    }
  });

  it('kill -9 mid-stream loses no event, and sends again only what was sent but not recorded at the crash', async function () {
    this.timeout(90_000);
    f.rx.respond = () => ({ status: 200, delayMs: 2 });
    await f.t.db.query(sql`UPDATE espf.http_handlers SET token_rate = 200, token_burstiness = 200 WHERE handler = 'EventSender'`); // about 3 s for 600
    const proc = new EspfProcess(f.t.url);
    await proc.streaming();
    const first = f.rx.received.length;
    const accounts = await addAccounts(f.t.db, f.ids, 600, 'crash-');
    const events: { i_event: number }[] = await f.t.db.query(sql`SELECT i_event FROM espf.events WHERE event_type = 'Account/New' AND (variables->>'i_account')::bigint = ANY(${accounts})`);
    assert.equal(events.length, 600);
    const want = new Set(events.map((e) => Number(e.i_event)));
    await eventually(async () => {
      const [r] = await f.t.db.query(sql`SELECT count(*)::int AS n FROM espf.event_deliveries WHERE state = 'DELIVERED' AND i_event = ANY(${[...want]})`);
      return r.n >= 100;
    }, 20_000, 'deliveries under way and recorded');
    proc.kill('SIGKILL');
    await proc.exited();
    // Requests that reached the receiver before the kill are counted once its connections are closed.
    await eventually(async () => (await f.rx.connections()) === 0, 10_000, 'the killed process\'s connections closed');
    const atCrash = f.rx.received.length - first;
    // At the crash: what the receiver had got, and what espf had recorded DELIVERED.
    const sentAtCrash = new Set(f.rx.arrived.map((r) => r.json.variables.i_event).filter((i) => want.has(i)));
    const recorded = new Set((await f.t.db.query(sql`
      SELECT i_event FROM espf.event_deliveries WHERE handler = 'EventSender' AND state = 'DELIVERED' AND i_event = ANY(${[...want]})`)).map((r) => Number(r.i_event)));
    const unrecorded = new Set([...sentAtCrash].filter((i) => !recorded.has(i)));
    const proc2 = new EspfProcess(f.t.url);
    try {
      await proc2.streaming();
      await f.rx.waitFor(() => { const got = new Set(f.rx.received.map((r) => r.json.variables.i_event)); return [...want].every((i) => got.has(i)); }, 40_000, 'all 600 events after the restart');
      await eventually(async () => {
        const [r] = await f.t.db.query(sql`SELECT count(*)::int AS n FROM espf.event_deliveries WHERE state = 'DELIVERED' AND i_event = ANY(${[...want]})`);
        return r.n === 600;
      }, 20_000, '600 DELIVERED rows');
      const counts = new Map<number, number>();
      for (const r of f.rx.arrived) if (want.has(r.json.variables.i_event)) counts.set(r.json.variables.i_event, (counts.get(r.json.variables.i_event) ?? 0) + 1);
      const dups = [...counts].filter(([, n]) => n > 1).map(([i]) => i);
      assert.ok(atCrash >= 100 && atCrash <= 450, `killed mid-stream, with at least a quarter still to send (${atCrash} of 600 had arrived)`);
      assert.ok(recorded.size > 0, 'some deliveries were recorded before the crash');
      const unexpected = dups.filter((i) => !unrecorded.has(i));
      assert.deepEqual(unexpected, [], `sent again though recorded DELIVERED before the crash (${dups.length} duplicates, ${unrecorded.size} sent but not recorded at the crash)`);
      assert.ok(dups.length <= unrecorded.size, `${dups.length} duplicates <= ${unrecorded.size} sent but not recorded at the crash`);
    } finally {
      await proc2.stop();
      await f.t.db.query(sql`UPDATE espf.http_handlers SET token_rate = 1000000, token_burstiness = 1000000 WHERE handler = 'EventSender'`);
    }
  });

  it('a PostgreSQL restart during delivery: espf run reconnects and loses nothing', async function () {
    const cluster = testServer().cluster;
    if (!cluster) this.skip();
    this.timeout(90_000);
    const proc = new EspfProcess(f.t.url);
    try {
      await proc.streaming();
      const first = await addAccounts(f.t.db, f.ids, 100, 'pgrestart-a-');
      await restartCluster(cluster!, 'fast');
      const second = await eventually(async () => addAccounts(f.t.db, f.ids, 100, 'pgrestart-b-').catch(() => undefined), 20_000, 'the database back');
      const want = [...first, ...second];
      await f.rx.waitFor(() => want.every((a) => f.rx.received.some((r) => r.json.variables.i_account === a)), 40_000, 'all 200 accounts');
      assert.equal(proc.exitCode, undefined, 'espf run kept running');
    } finally {
      await proc.stop();
    }
  });

  it('hot standby: a second instance with the same name waits, and takes over within 10 s when the first dies', async function () {
    this.timeout(60_000);
    const a = new EspfProcess(f.t.url);
    await a.streaming();
    const b = new EspfProcess(f.t.url, 'main', { ESPF_LOG_LEVEL: 'debug' });
    try {
      await eventually(async () => /slot is in use by another instance; waiting/.test(b.output), 15_000, 'the standby to find the slot taken');
      assert.ok(!/streaming slot/.test(b.output), 'the standby does not stream while the slot is taken');
      a.kill('SIGKILL');
      await a.exited();
      const killed = Date.now();
      await b.streaming(15_000);
      assert.ok(Date.now() - killed < 10_000, `took over in ${Date.now() - killed} ms`);
      const [acc] = await addAccounts(f.t.db, f.ids, 1, 'standby-');
      await f.rx.waitFor(() => f.rx.received.some((r) => r.json.variables.i_account === acc), 10_000, 'an event through the standby');
    } finally {
      await b.stop();
      if (a.exitCode === undefined) await a.stop();
    }
  });

  it('SIGTERM: a graceful stop exits 0', async () => {
    const p = new EspfProcess(f.t.url);
    await p.streaming();
    p.kill('SIGTERM');
    assert.equal(await p.exited(), 0);
  });
});
