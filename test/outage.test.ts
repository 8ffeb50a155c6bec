import assert from 'node:assert/strict';
import { sql, type SQLQuery } from '@databases/pg';
import { startCluster } from '../src/db/cluster.ts';
import { connect } from '../src/db/connect.ts';
import { migrate } from '../src/migrate/migrate.ts';
import { testServer } from './support/cluster.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { EspfProcess } from './support/child.ts';
import { deliveryFixture, type SenderRun } from './support/fixture.ts';
import { eventually, type TestReceiver, type Received } from './support/receiver.ts';
import { addAccounts, configureEventSender, seedCustomer } from './support/sender.ts';
import { Metrics } from '../src/metrics/metrics.ts';
import { formatStatus, readStatus } from '../src/cli/status-command.ts';
import { composeDigest, type UnreachableTarget } from '../src/notify/digest.ts';
import { previousRelease } from './support/upgrade.ts';

type Run = SenderRun;
const TYPES = ['Account/New', 'Account/Blocked', 'Account/Unblocked'];

/** Each account's requests in the order they arrived: their i_event must increase (first arrivals; a retry repeats the same i_event). */
function assertAccountOrder(reqs: readonly Received[]): void {
  const byAccount = new Map<number, number[]>();
  for (const r of reqs) {
    const a = Number(r.json.variables.i_account);
    const seq = byAccount.get(a) ?? [];
    if (!seq.includes(r.json.variables.i_event)) seq.push(r.json.variables.i_event);
    byAccount.set(a, seq);
  }
  for (const [a, seq] of byAccount) assert.deepEqual(seq, [...seq].sort((x, y) => x - y), `account ${a}: commit order`);
}

/** Blocks and unblocks these accounts `rounds` times (one transaction per statement): 2 × rounds events per account. */
async function toggle(t: TestDatabase, accounts: readonly number[], rounds: number): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    await t.db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account = ANY(${accounts})`);
    await t.db.query(sql`UPDATE billing.account SET blocked = false WHERE i_account = ANY(${accounts})`);
  }
}

async function waitingRows(t: TestDatabase): Promise<number> {
  const [r] = await t.db.query(sql`SELECT count(*)::int AS n FROM espf.event_deliveries WHERE handler = 'EventSender' AND state IN ('PENDING', 'RETRY')`);
  return r.n;
}

describe('outage: a receiver that goes down and comes back', function () {
  this.timeout(60_000);
  // A fresh world per test; each test configures EventSender its own way and starts its sender.
  const f = deliveryFixture({ each: true, sender: false });
  let t: TestDatabase;
  let rx: TestReceiver;
  let ids: { i_product: number; i_customer: number };
  let run: Run | undefined;
  let metrics: Metrics;
  beforeEach(() => {
    ({ t, rx, ids } = f);
    run = undefined;
    metrics = new Metrics({ processMetrics: false });
  });

  const eventSender = () => run!.sender.httpHandlers.get('EventSender')!;

  it('the breaker opens after breaker_failures; the down receiver then sees one probe per interval; recovery drains everything in per-account order', async () => {
    await configureEventSender(t.db, rx.url, TYPES, { max_attempts: 1000, breaker_failures: 3, probe_delay: 0.4, probe_max_delay: 0.8 });
    run = await f.startSender({ metrics });
    rx.respond = () => ({ status: 503 });
    const accounts = await addAccounts(t.db, ids, 30, 'down-');
    await eventually(async () => !eventSender().targetStates[0]!.up || undefined, 10_000, 'the target down');
    assert.match(await metrics.text(), /espf_target_up\{handler="EventSender",url="http:\/\/127\.0\.0\.1:\d+\/events"\} 0/);
    // espf.target_states is written after the change, in the background: wait for the row.
    const row = await eventually(async () => {
      const [r] = await t.db.query(sql`SELECT up, failures, instance FROM espf.target_states WHERE handler = 'EventSender'`);
      return r && !r.up ? r : undefined;
    }, 10_000, 'the target state row');
    assert.deepEqual(row, { up: false, failures: 3, instance: 'main' });
    // More events of the same accounts while it is down: they wait, durably (the slot moves on).
    await toggle(t, accounts, 2);
    await eventually(async () => (await waitingRows(t)) === 150 || undefined, 15_000, '150 waiting deliveries');
    // Requests already on the wire when it went down have arrived (each Account/New once) ...
    await rx.waitFor(() => new Set(rx.arrived.map((r) => r.json.variables.i_event)).size >= 30, 10_000, 'every first attempt');
    await new Promise((r) => setTimeout(r, 300));
    // ... from now on, with 150 deliveries waiting (retry_delay 0.05 s), only probes.
    const from = rx.arrived.length;
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, 3000));
    const probes = rx.arrived.slice(from);
    const elapsed = Date.now() - t0;
    assert.ok(probes.length >= 2, `${probes.length} probes in ${elapsed} ms`);
    assert.ok(probes.length <= Math.ceil(elapsed / 400) + 1, `${probes.length} requests in ${elapsed} ms: at most one per probe_delay: ${probes.map((p) => `${p.json.variables.i_event}@${p.at - t0}`).join(' ')}`);
    for (let i = 1; i < probes.length; i++) assert.ok(probes[i]!.at - probes[i - 1]!.at >= 350, `probes ${probes[i]!.at - probes[i - 1]!.at} ms apart`);
    assert.equal(new Set(probes.map((p) => p.json.variables.i_event)).size, 1, 'the probe is always the same waiting delivery');
    const [probed] = await t.db.query(sql`SELECT probes, next_probe_at FROM espf.target_states WHERE handler = 'EventSender'`);
    assert.ok(probed.probes >= 2 && probed.next_probe_at, JSON.stringify(probed));
    // espf status and the failure e-mail show it.
    const report = await readStatus(t.db, { hours: 1, limit: 5 });
    assert.equal(report.targets[0]?.state, 'DOWN');
    assert.match(formatStatus(report, { hours: 1, limit: 5 }), /^Targets: circuit breaker per URL[^\n]*\nhandler +i_env +url +state[^\n]*\n[- ]+\nEventSender +http:\/\/127\.0\.0\.1:\d+\/events +DOWN /m);
    const down: UnreachableTarget[] = await t.db.query(sql`SELECT * FROM espf.down_targets('0 seconds')`);
    assert.equal(down.length, 1);
    assert.equal(Number(down[0]!.failing), 150);
    const mail = composeDigest({ from: 'espf@example.net', to: ['noc@example.net'], instance: 'main', failed: [], unreachable: down, lagging: [] });
    assert.match(mail.subject, /1 target unreachable/);
    assert.match(mail.text, /handler EventSender \(instance main\)  http:\/\/127\.0\.0\.1:\d+\/events\n    down \(circuit breaker open\) since [^,]+, \d+ probes since; 150 deliveries waiting; last HTTP 503/);

    rx.respond = () => ({ status: 200 });
    const start = rx.received.length;
    await eventually(async () => {
      const [r] = await t.db.query(sql`SELECT count(*)::int AS n FROM espf.event_deliveries WHERE handler = 'EventSender' AND state = 'DELIVERED'`);
      return r.n === 150 || undefined;
    }, 20_000, 'all 150 delivered');
    assert.equal(new Set(rx.received.slice(start).map((r) => r.json.variables.i_event)).size, 150);
    assertAccountOrder(rx.arrived);
    assert.equal(eventSender().targetStates[0]!.up, true);
    assert.match(await metrics.text(), /espf_target_up\{handler="EventSender",url="[^"]+"\} 1/);
    const [up] = await t.db.query(sql`SELECT up FROM espf.target_states WHERE handler = 'EventSender'`);
    assert.equal(up.up, true);
  });

  it('a 4xx for one event (the receiver refuses it) leaves the breaker closed; it fails by max_attempts alone', async () => {
    await configureEventSender(t.db, rx.url, TYPES, { max_attempts: 5, breaker_failures: 2, probe_delay: 0.4, probe_max_delay: 0.8 });
    run = await f.startSender({ metrics });
    const [bad, ...good] = await addAccounts(t.db, ids, 5, 'refused-');
    await rx.waitFor(() => rx.received.length >= 5);
    let refusals = 0;
    rx.respond = (r) => {
      if (r.json.variables.i_account === bad) { refusals++; return { status: 422, body: 'unknown subscriber' }; }
      return { status: 200 };
    };
    await t.db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account = ${bad}`);
    const failed = await eventually(async () => {
      const [d] = await t.db.query(sql`SELECT state, attempts FROM espf.event_deliveries WHERE i_account = ${bad} AND event_type = 'Account/Blocked'`);
      return d?.state === 'FAILED' ? d : undefined;
    }, 15_000, 'FAILED');
    assert.equal(failed.attempts, 5);
    assert.equal(refusals, 5);
    assert.equal(eventSender().targetStates[0]!.up, true, 'the breaker stayed closed');
    const [row] = await t.db.query(sql`SELECT count(*)::int AS n FROM espf.target_states WHERE NOT up`);
    assert.equal(row.n, 0);
    await toggle(t, good, 1);
    await rx.waitFor(() => rx.received.filter((r) => r.json.event_type === 'Account/Unblocked').length >= 4, 10_000, 'the other accounts go on');
  });

  it('an outage ten times longer than max_attempts × retry_max_delay fails nothing: probes do not count', async () => {
    // The breaker opens at the first failure: a retry is scheduled only when a failure is
    // recorded, so none can count a second attempt however slow the machine (with 2, a
    // loaded machine could record the second failure after the first one's retry).
    await configureEventSender(t.db, rx.url, TYPES, { max_attempts: 2, retry_delay: 0.2, retry_max_delay: 0.2, breaker_failures: 1, probe_delay: 0.05, probe_max_delay: 0.1 });
    run = await f.startSender({ metrics });
    rx.respond = () => ({ status: 503 });
    const accounts = await addAccounts(t.db, ids, 20, 'long-');
    await eventually(async () => !eventSender().targetStates[0]!.up || undefined, 10_000, 'the target down');
    await new Promise((r) => setTimeout(r, 4000)); // 2 × 0.2 s is the retry budget: ten times that
    const probes = rx.arrived.filter((r) => r.json.variables.i_account === rx.arrived.at(-1)!.json.variables.i_account).length;
    assert.ok(probes >= 10, `${probes} probes of one delivery`);
    const [during] = await t.db.query(sql`SELECT count(*) FILTER (WHERE state = 'FAILED')::int AS failed, max(attempts)::int AS attempts FROM espf.event_deliveries`);
    assert.deepEqual(during, { failed: 0, attempts: 1 });
    rx.respond = () => ({ status: 200 });
    await eventually(async () => {
      const [r] = await t.db.query(sql`SELECT count(*) FILTER (WHERE state = 'DELIVERED')::int AS n FROM espf.event_deliveries WHERE i_account = ANY(${accounts})`);
      return r.n === 20 || undefined;
    }, 15_000, 'all 20 delivered');
    const [after] = await t.db.query(sql`SELECT count(*) FILTER (WHERE state = 'FAILED')::int AS failed, max(attempts)::int AS attempts FROM espf.event_deliveries`);
    assert.deepEqual(after, { failed: 0, attempts: 2 });
  });

  it('past the memory window deliveries wait in the database only; they come back in pages, in per-account order, and a fresh event of a quiet account is not stuck behind them', async () => {
    await configureEventSender(t.db, rx.url, TYPES, { max_attempts: 1000, breaker_failures: 3, probe_delay: 0.2, probe_max_delay: 0.4, token_rate: 200, token_burstiness: 200 });
    run = await f.startSender({ metrics, window: 100 });
    rx.respond = () => ({ status: 503 });
    const accounts = await addAccounts(t.db, ids, 50, 'window-');
    const [quiet] = await addAccounts(t.db, ids, 1, 'quiet-', { blocked: false });
    await toggle(t, accounts, 5); // 500 more events, 10 per account
    await eventually(async () => (await waitingRows(t)) === 551 || undefined, 15_000, '551 waiting deliveries');
    const h = eventSender();
    assert.ok(h.size <= 100, `${h.size} held in memory (window 100)`);
    assert.equal(h.window.spilled, true);
    rx.respond = () => ({ status: 200 });
    await rx.waitFor(() => rx.received.length >= 20, 10_000, 'the drain under way');
    // A new event of an account with nothing waiting, while about 500 others wait.
    await t.db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account = ${quiet}`);
    await eventually(async () => {
      const [r] = await t.db.query(sql`SELECT count(*)::int AS n FROM espf.event_deliveries WHERE state = 'DELIVERED'`);
      return r.n === 552 || undefined;
    }, 30_000, 'all 552 delivered');
    const firsts: number[] = [];
    for (const r of rx.received) if (!firsts.includes(r.json.variables.i_event)) firsts.push(r.json.variables.i_event);
    assert.equal(firsts.length, 552);
    const quietAt = rx.received.findIndex((r) => r.json.variables.i_account === quiet && r.json.event_type === 'Account/Blocked');
    assert.ok(quietAt < 552 * 0.6, `the quiet account's event went out ${quietAt}th of 552`);
    assertAccountOrder(rx.arrived);
    assert.equal(h.window.spilled, false, 'caught up: memory holds every waiting delivery again');
  });
});

describe('outage: restart while the receiver is down', function () {
  this.timeout(120_000);
  const f = deliveryFixture({ seed: false, sender: false }); // the test configures and starts espf run
  let t: TestDatabase;
  let rx: TestReceiver;
  before(() => { ({ t, rx } = f); });

  it('kill -9 during an outage: the restart reads the backlog in pages, keeps probing, and after recovery delivers everything once, in per-account order', async () => {
    await configureEventSender(t.db, rx.url, TYPES, { max_attempts: 1000, breaker_failures: 3, probe_delay: 0.3, probe_max_delay: 0.6 });
    const ids = await seedCustomer(t.db);
    rx.respond = () => ({ status: 503 });
    const env = { ESPF_WINDOW: '100' };
    const first = new EspfProcess(t.url, 'main', env);
    let second: EspfProcess | undefined;
    try {
      await first.streaming();
      const accounts = await addAccounts(t.db, ids, 100, 'restart-');
      await toggle(t, accounts, 2); // 500 events in all, 5 per account
      await eventually(async () => (await waitingRows(t)) === 500 || undefined, 30_000, '500 waiting deliveries');
      await eventually(async () => {
        const [r] = await t.db.query(sql`SELECT up FROM espf.target_states WHERE handler = 'EventSender'`);
        return r?.up === false || undefined;
      }, 10_000, 'the target recorded down');
      first.kill('SIGKILL');
      await first.exited();
      const atRestart = rx.arrived.length;
      second = new EspfProcess(t.url, 'main', env);
      await second.streaming();
      await new Promise((r) => setTimeout(r, 2000));
      const sinceRestart = rx.arrived.length - atRestart;
      assert.ok(sinceRestart <= 2000 / 300 + 2, `${sinceRestart} requests to the down receiver in 2 s after the restart: probes only`);
      assert.match(second.output, /was down when espf run last stopped/);
      assert.match(second.output, /resumed waiting deliveries/);
      rx.respond = () => ({ status: 200 });
      const want: number[] = (await t.db.query(sql`SELECT i_event FROM espf.event_deliveries WHERE handler = 'EventSender'`)).map((r) => Number(r.i_event));
      assert.equal(want.length, 500);
      await rx.waitFor(() => new Set(rx.received.map((r) => r.json.variables.i_event)).size >= 500, 30_000, 'all 500');
      await eventually(async () => {
        const [r] = await t.db.query(sql`SELECT count(*)::int AS n FROM espf.event_deliveries WHERE state = 'DELIVERED'`);
        return r.n === 500 || undefined;
      }, 15_000, '500 DELIVERED rows');
      assert.equal(rx.received.length, 500, 'each delivered once (nothing was on the wire with a 2xx at the crash)');
      assertAccountOrder(rx.arrived);
    } finally {
      if (first.exitCode === undefined) first.kill('SIGKILL');
      await second?.stop();
    }
  });
});

describe('outage: stopping while the database is unreachable', function () {
  const f = deliveryFixture({ seed: false, sender: false }); // the test configures and starts espf run
  let t: TestDatabase;
  let rx: TestReceiver;
  before(() => { ({ t, rx } = f); });

  it('SIGTERM with outcomes waiting and the database stopped ends within ESPF_STOP_TIMEOUT, non-zero, with one line; a restart delivers everything', async function () {
    const cluster = testServer().cluster;
    if (!cluster) this.skip(); // the test stops the server: only a throwaway cluster of our own
    this.timeout(180_000);
    rx.respond = () => ({ status: 503 });
    // max_wait_time keeps its default (600 s): it no longer bounds the stop.
    await configureEventSender(t.db, rx.url, ['Account/New'], { max_attempts: 1_000_000, breaker_failures: 1_000_000 });
    const ids = await seedCustomer(t.db);
    const proc = new EspfProcess(t.url, 'main', { ESPF_STOP_TIMEOUT: '3' });
    let stopped = false;
    let second: EspfProcess | undefined;
    try {
      await proc.streaming();
      await addAccounts(t.db, ids, 2000, 'sigterm-');
      await eventually(async () => {
        const [r] = await t.db.query(sql`SELECT count(*)::int AS n FROM espf.event_deliveries WHERE state = 'RETRY'`);
        return r.n >= 500;
      }, 30_000, 'deliveries retrying');
      await rx.waitFor(() => rx.arrived.length > 3000, 30_000, 'retries under way');
      await cluster!.stop();
      stopped = true;
      // Outcomes keep coming (503s) and cannot be written.
      await new Promise((r) => setTimeout(r, 500));
      const sent = Date.now();
      proc.kill('SIGTERM');
      const code = await Promise.race([proc.exited(), new Promise<'hung'>((r) => setTimeout(() => r('hung'), 20_000))]);
      if (code === 'hung') proc.kill('SIGKILL');
      assert.notEqual(code, 'hung', `espf run did not exit within 20 s of SIGTERM (ESPF_STOP_TIMEOUT 3 s):\n${proc.output.slice(-1500)}`);
      const took = Date.now() - sent;
      // ESPF_STOP_TIMEOUT (the process ends 0.2 s before it), and room for a loaded machine: far from the 600 s of max_wait_time.
      assert.ok(took < 3000 + 1000, `exited ${took} ms after SIGTERM`);
      assert.notEqual(code, 0, 'outcomes could not be recorded: a non-zero exit');
      const lines = proc.output.split('\n').filter((l) => /could not be recorded/.test(l));
      assert.equal(lines.length, 1, `one line says so:\n${proc.output.slice(-1500)}`);
      assert.match(lines[0]!, /^espf: stopped with \d+ outcome\(s\) that could not be recorded \(the database did not answer\) within ESPF_STOP_TIMEOUT=3 s; they were not acknowledged, so the next start will replay them$/);

      // The next start replays them: every account's event is delivered.
      await startCluster({ dir: cluster!.dir, port: cluster!.port, durable: false });
      stopped = false;
      await eventually(async () => (await t.db.query(sql`SELECT 1 AS ok`).catch(() => []))[0]?.ok === 1 || undefined, 30_000, 'the database back');
      rx.respond = () => ({ status: 200 });
      second = new EspfProcess(t.url, 'main', { ESPF_STOP_TIMEOUT: '3' });
      await second.streaming();
      await rx.waitFor(() => new Set(rx.received.map((r) => r.json.variables.i_event)).size >= 2000, 60_000, 'all 2000 at the receiver');
      await eventually(async () => {
        const [r] = await t.db.query(sql`SELECT count(*) FILTER (WHERE state = 'DELIVERED')::int AS delivered, count(*)::int AS n FROM espf.event_deliveries`);
        return (r.delivered === 2000 && r.n === 2000) || undefined;
      }, 30_000, '2000 DELIVERED rows');
      const accounts = await t.db.query(sql`SELECT count(DISTINCT (e.variables ->> 'i_account'))::int AS n FROM espf.events e JOIN espf.event_deliveries d USING (i_event) WHERE d.state = 'DELIVERED'`);
      assert.equal(accounts[0].n, 2000);
    } finally {
      if (proc.exitCode === undefined) proc.kill('SIGKILL');
      if (stopped) await startCluster({ dir: cluster!.dir, port: cluster!.port, durable: false });
      await second?.stop();
      await t.db.query(sql`SELECT 1`).catch(() => undefined); // the pool reconnects
    }
  });
});

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
    // Rows without a commit position come first (none are written by espf run today).
    await t.db.query(sql`INSERT INTO espf.events (i_event, event_type, variables) VALUES (1031, 'Account/Blocked', '{"i_event": 1031, "i_account": 9}'), (1032, 'Account/Blocked', '{"i_event": 1032, "i_account": 9}')`);
    await t.db.query(sql`INSERT INTO espf.event_deliveries (i_event, handler, state, event_type, order_key, i_account, instance)
                         VALUES (1031, 'EventSender', 'PENDING', 'Account/Blocked', 'a:9', 9, 'main'), (1032, 'EventSender', 'RETRY', 'Account/Blocked', 'a:9', 9, 'main')`);
    const want: number[] = (await t.db.query(sql`
      SELECT i_event FROM espf.event_deliveries WHERE handler = 'EventSender' AND state IN ('PENDING', 'RETRY')
       ORDER BY commit_lsn NULLS FIRST, i_event`)).map((r) => Number(r.i_event));
    assert.equal(want.length, 26);
    assert.deepEqual(want.slice(0, 2), [1031, 1032]);
    const got: number[] = [];
    let cursor: { lsn: string | null; i: number } = { lsn: null, i: 0 };
    for (let pages = 0; pages < 20; pages++) {
      const rows = await t.db.query(sql`SELECT * FROM espf.waiting_page('EventSender', ${cursor.lsn}::pg_lsn, ${cursor.i}, ${pages === 0 ? 1 : 5})`);
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
    const prev = await previousRelease('0012_outage.sql', ['025_outage_checks.sql', '410_waiting_pages.sql']);
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
      assert.deepEqual(await db.query(sql`SELECT to_jsonb(d) - 'steps_done' - 'step_answers' AS d FROM espf.event_deliveries d ORDER BY i_event`), before);
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

/** An empty database (not the migrated template). */
const createEmptyDatabase = () => createTestDatabase({ empty: true });
