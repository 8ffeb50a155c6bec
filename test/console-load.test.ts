import assert from 'node:assert/strict';
import http from 'node:http';
import { sql } from '@databases/pg';
import pino from 'pino';
import { ADMIN, enableConsole, holdLock, lockWaiters } from './support/console.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { eventually, TestReceiver } from './support/receiver.ts';
import { addAccounts, configureEventSender, seedCustomer, startSender } from './support/sender.ts';
import { CONSOLE_POOL_SIZE, openPools, type Pools } from '../src/run/pools.ts';
import { startHttpServer } from '../src/run/http-server.ts';
import { SETTINGS_TTL_MS, SettingsCache } from '../src/console/settings.ts';

/**
 * A flood of anonymous console requests cannot slow provisioning (docs/console.md,
 * "Load"): wired as espf run wires it (src/run/pools.ts, the default settings
 * cache), the console's reads wait on its own pool, never on the sender's, and
 * the flood gets answers while every event is delivered and recorded.
 */
describe('console: an anonymous flood leaves delivery running', function () {
  this.timeout(180_000);
  let t: TestDatabase;
  let pools: Pools;
  let rx: TestReceiver;
  let run: Awaited<ReturnType<typeof startSender>>;
  let server: Awaited<ReturnType<typeof startHttpServer>>;
  let ids: { i_product: number; i_customer: number };
  /** The login form's token and its cookie, as a browser gets them (one GET; the flood reuses them). */
  let form: { cookie: string; token: string } | undefined;

  before(async () => {
    t = await createTestDatabase();
    await enableConsole(t.db);
    // Each flood request comes from an address of its own (X-Forwarded-For of a trusted proxy): the
    // login limit does not stop the flood early, so password checks run while events are delivered.
    await t.db.query(sql`UPDATE espf.console SET trusted_proxies = '{127.0.0.1}'`);
    rx = await new TestReceiver().listen();
    await configureEventSender(t.db, rx.url, ['Account/New']);
    ids = await seedCustomer(t.db);
    pools = openPools(t.url, 'main');
    run = await startSender(pools.db, t.url);
    server = await startHttpServer({ sender: run.sender, db: pools.db, consoleDb: pools.consoleDb, log: pino({ level: 'silent' }), port: 0, host: '127.0.0.1' });
  });
  after(async () => {
    await server?.close();
    await run?.stop();
    await pools?.dispose();
    await rx?.close();
    await t?.drop();
  });

  /** One anonymous request on a connection of its own: its status, or the error that ended it. Logins only once `form` is set. */
  function anonymous(i: number): Promise<number | string> {
    const kinds = [
      { method: 'GET', path: '/console/' },
      { method: 'POST', path: '/console/login', body: `_login=${form?.token}&user=${ADMIN.user}&password=wrong+password+${i}` },
      { method: 'GET', path: `/console/deliveries?state=FAILED&n=${i}` },
      { method: 'POST', path: '/console/login', body: `_login=${form?.token}&user=nobody${i % 50}&password=guess+${i}` },
    ];
    const k = form ? kinds[i % kinds.length]! : kinds[(i % 2) * 2]!;
    return new Promise((resolve) => {
      const req = http.request({ host: '127.0.0.1', port: server.port, method: k.method, path: k.path, agent: false,
        headers: k.body ? { 'content-type': 'application/x-www-form-urlencoded', cookie: form?.cookie ?? '', origin: `http://127.0.0.1:${server.port}`,
          'x-forwarded-for': `198.51.${(i >> 8) & 255}.${i & 255}` } : {} }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', (e) => resolve(e.message));
      });
      req.on('error', (e) => resolve(`${(e as { code?: string }).code ?? e.message}`));
      req.end(k.body);
    });
  }

  async function delivered(): Promise<number> {
    const [r] = await t.db.query(sql`SELECT count(*)::int AS n FROM espf.event_deliveries WHERE handler = 'EventSender' AND state = 'DELIVERED'`);
    return r.n;
  }

  function expectAnswers(statuses: (number | string)[]): void {
    const counts = new Map<number | string, number>();
    for (const s of statuses) counts.set(s, (counts.get(s) ?? 0) + 1);
    const unexpected = [...counts].filter(([s]) => ![303, 401, 429].includes(s as number));
    assert.deepEqual(unexpected, [], `answers: ${JSON.stringify([...counts])}`);
  }

  it('while the console\'s settings read waits on a lock, 2,000 waiting requests (pages: the first read of the settings) take no connection of the sender, and 2,000 events are delivered', async () => {
    // The first test of the file: nothing has read the settings yet, so the flood's first request reads them.
    const lock = await holdLock(t.db, 'espf.console');
    const flood = Promise.all(Array.from({ length: 2000 }, (_, i) => anonymous(i)));
    try {
      // The console's read waits on the lock, on a connection of the console's pool.
      assert.deepEqual(await lockWaiters(t.db, 'FROM espf.console', 'the console read to wait on the lock'), ['espf run main console']);
      const before = await delivered();
      await addAccounts(t.db, ids, 2000, 'locked-');
      await eventually(async () => (await delivered()) - before >= 2000 || undefined, 120_000, '2,000 deliveries recorded while the console waits');
      const [c] = await t.db.query(sql`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'espf run main console'`);
      assert.ok(c.n <= CONSOLE_POOL_SIZE, `${c.n} console connections`);
    } finally {
      await lock.release();
    }
    // Once the lock is gone, every waiting request gets its answer.
    expectAnswers(await flood);
  });

  it('during a flood of 2,000 concurrent anonymous requests (each answered one starts another), 3,000 events are delivered; every request is answered 303, 401 or 429', async () => {
    // From here on the flood also posts wrong passwords, with the login form's token as a browser has it.
    const page = await fetch(`http://127.0.0.1:${server.port}/console/login`);
    form = { cookie: (page.headers.get('set-cookie') ?? '').split(';')[0]!, token: /name="_login" value="([^"]*)"/.exec(await page.text())![1]! };
    let done = false;
    const statuses: (number | string)[] = [];
    let next = 0;
    const worker = async () => {
      while (!done) statuses.push(await anonymous(next++));
    };
    const workers = Array.from({ length: 2000 }, worker);
    try {
      // The flood is under way (2,000 answered) before the events are written, and goes on until they are recorded.
      await eventually(async () => statuses.length >= 2000, 60_000, 'the flood to be answered');
      const before = await delivered();
      const answeredBefore = statuses.length;
      await addAccounts(t.db, ids, 3000, 'flood-');
      await eventually(async () => (await delivered()) - before >= 3000 || undefined, 150_000, '3,000 deliveries recorded during the flood');
      assert.ok(statuses.length > answeredBefore, 'the flood was answered while the events were delivered');
    } finally {
      done = true;
      await Promise.all(workers);
    }
    assert.ok(statuses.length >= 2000, `${statuses.length} answers`);
    expectAnswers(statuses);
    assert.ok(statuses.includes(303) && statuses.includes(401) && statuses.includes(429), 'redirects, wrong passwords checked, logins refused while 2 checks run');
    assert.equal(rx.received.filter((r) => r.json.event_type === 'Account/New').length >= 5000, true);
  });

  it('the settings are read once per period, by one query however many requests ask at once', async () => {
    let now = 1_000_000;
    const cache = new SettingsCache(pools.consoleDb, SETTINGS_TTL_MS, () => now);
    const lock = await holdLock(t.db, 'espf.console');
    const asked = Promise.all(Array.from({ length: 100 }, () => cache.get()));
    try {
      await eventually(async () => (await t.db.query(sql`SELECT 1 FROM pg_stat_activity WHERE datname = current_database()
                                                          AND wait_event_type = 'Lock' AND query LIKE '%FROM espf.console%'`)).length > 0, 15_000, 'the read to wait');
      const [w] = await t.db.query(sql`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND query LIKE '%FROM espf.console%' AND state = 'active' AND pid <> pg_backend_pid()`);
      assert.equal(w.n, 1, 'one query for 100 requests');
    } finally {
      await lock.release();
    }
    const first = await asked;
    assert.ok(first.every((s) => s === first[0]) && first[0]!.login_attempts === 10);
    await t.db.query(sql`UPDATE espf.console SET login_attempts = 7`);
    now += SETTINGS_TTL_MS - 1;
    assert.equal((await cache.get())!.login_attempts, 10, 'kept for the period');
    now += 1;
    assert.equal((await cache.get())!.login_attempts, 7, 'read again after it');
    await t.db.query(sql`UPDATE espf.console SET login_attempts = 10`);
  });
});
