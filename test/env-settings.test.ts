// Settings per environment (docs/handlers.md, "Settings per environment"):
// rows of espf.http_handler_envs override an http handler's default row for
// the events of one i_env; the database checks the merged settings; each
// environment has its own token bucket and circuit breakers.
import assert from 'node:assert/strict';
import { sql, type Queryable } from '@databases/pg';
import { migrate } from '../src/migrate/migrate.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { deliveryFixture } from './support/fixture.ts';
import { eventually, TestReceiver } from './support/receiver.ts';
import { acknowledgedPastNow } from './support/sender.ts';
import { espf, show } from './support/cli.ts';
import { consoleHttp, enableConsole, startConsoleServer, ADMIN, VIEWER } from './support/console.ts';
import { databaseAtPreviousRelease } from './support/upgrade.ts';
import { Metrics } from '../src/metrics/metrics.ts';
import { formatStatus, readStatus } from '../src/cli/status-command.ts';
import { composeDigest, type UnreachableTarget } from '../src/notify/digest.ts';

const TYPES = ['Account/New'];
const basic = (user: string, key: string) => `Basic ${Buffer.from(`${user}:${key}`).toString('base64')}`;

/** One account of environment `env` (one Account/New event) in its own transaction; its i_account. */
async function newAccount(db: Queryable, ids: { i_product: number; i_customer: number }, id: string, env: number): Promise<number> {
  const [a] = await db.query(sql`INSERT INTO billing.account (id, i_customer, i_product, i_env) VALUES (${id}, ${ids.i_customer}, ${ids.i_product}, ${env}) RETURNING i_account`);
  return a.i_account;
}

/** The database's refusal of `q`: its SQLSTATE and message (asserts there is one). */
async function refusal(q: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await q;
  } catch (err) {
    const e = err as { code?: string; message: string };
    return { code: e.code ?? '', message: e.message };
  }
  assert.fail('the database accepted it');
}

async function envRows(db: Queryable): Promise<unknown[]> {
  return db.query(sql`SELECT to_jsonb(e) AS e FROM espf.http_handler_envs e ORDER BY handler, i_env`);
}

describe('settings per environment: the rows and their checks', function () {
  let t: TestDatabase;
  before(async () => {
    t = await createTestDatabase();
    await t.db.query(sql`UPDATE espf.http_handlers SET url = '{http://127.0.0.1:9/default}', auth_method = 'Basic', basic_auth_user = 'global', basic_auth_key = 'global-key' WHERE handler = 'EventSender'`);
  });
  after(async () => { await t.drop(); });

  it('an override that inherits what it does not set is accepted, and merged', async () => {
    const { db } = t;
    await db.query(sql`INSERT INTO espf.http_handler_envs (handler, i_env, url, basic_auth_key) VALUES ('EventSender', 2, '{http://127.0.0.1:9/two}', 'key-two')`);
    const [m] = await db.query(sql`SELECT to_jsonb(espf.merged_http_settings(x, e)) AS m FROM espf.http_handlers x JOIN espf.http_handler_envs e USING (handler) WHERE e.i_env = 2`);
    assert.deepEqual([m.m.url, m.m.auth_method, m.m.basic_auth_user, m.m.basic_auth_key, Number(m.m.token_rate)],
      [['http://127.0.0.1:9/two'], 'Basic', 'global', 'key-two', 10]);
    await db.query(sql`DELETE FROM espf.http_handler_envs`);
  });

  it('bad rows are refused in one line naming the column, the handler and i_env, with the SQLSTATE of the default row\'s rules; nothing changes', async () => {
    const { db } = t;
    await db.query(sql`INSERT INTO espf.http_handler_envs (handler, i_env, token_rate) VALUES ('EventSender', 5, 3)`);
    const before = await envRows(db);
    const cases: [() => Promise<unknown>, string, RegExp][] = [
      [() => db.query(sql`INSERT INTO espf.http_handler_envs (handler, i_env, url) VALUES ('EventSender', 2, '{ftp://x/y}')`), '23514',
        /^espf\.http_handler_envs\.url \(handler EventSender, i_env 2\): 'ftp:\/\/x\/y' is not an http\(s\) URL/],
      [() => db.query(sql`INSERT INTO espf.http_handler_envs (handler, i_env, url) VALUES ('EventSender', 2, '{}')`), '23514', /^espf\.http_handler_envs\.url \(handler EventSender, i_env 2\): cannot be an empty list/],
      [() => db.query(sql`INSERT INTO espf.http_handler_envs (handler, i_env, auth_method, custom_auth_type) VALUES ('EventSender', 2, 'Custom', 'Bearer')`), '23514',
        /^espf\.http_handler_envs\.custom_auth_type \(handler EventSender, i_env 2\): Custom auth needs both/],
      [() => db.query(sql`INSERT INTO espf.http_handler_envs (handler, i_env, token_rate) VALUES ('EventSender', 2, 'NaN')`), '23514', /^espf\.http_handler_envs\.token_rate \(handler EventSender, i_env 2\): must be > 0/],
      [() => db.query(sql`INSERT INTO espf.http_handler_envs (handler, i_env, retry_max_delay) VALUES ('EventSender', 2, 0.5)`), '23514', /^espf\.http_handler_envs\.retry_max_delay \(handler EventSender, i_env 2\): must be >= retry_delay/],
      [() => db.query(sql`INSERT INTO espf.http_handler_envs (handler, i_env, basic_auth_key) VALUES ('EventSender', 2, 'env:DATABASE_URL')`), '23514',
        /^espf\.http_handler_envs\.basic_auth_key \(handler EventSender, i_env 2\): 'env:DATABASE_URL' names a variable espf run does not read/],
      [() => db.query(sql`INSERT INTO espf.http_handler_envs (handler, i_env, ca_file) VALUES ('EventSender', 2, 'ca.pem')`), '23514', /^espf\.http_handler_envs\.ca_file \(handler EventSender, i_env 2\): 'ca\.pem' is not an absolute path/],
      [() => db.query(sql`INSERT INTO espf.http_handler_envs (handler, i_env, auth_method) VALUES ('EventSender', 2, 'StandardWebhooks')`), '23514', /^espf\.http_handler_envs\.signature_auth_key \(handler EventSender, i_env 2\): StandardWebhooks auth needs/],
      [() => db.query(sql`INSERT INTO espf.http_handler_envs (handler, i_env, event_names) VALUES ('EventSender', 2, '{"No/Such": "x"}')`), '23514', /^espf\.http_handler_envs\.event_names \(handler EventSender, i_env 2\): key 'No\/Such'/],
      [() => db.query(sql`INSERT INTO espf.http_handler_envs (handler, i_env, token_rate) VALUES ('NoSuch', 2, 1)`), '23503', /^espf\.http_handler_envs\.handler: 'NoSuch' is not an http handler/],
      [() => db.query(sql`INSERT INTO espf.http_handler_envs (handler, i_env, token_rate) VALUES ('EventSender', -1, 1)`), '23514', /^espf\.http_handler_envs\.i_env: handler EventSender: -1 is not an environment/],
      [() => db.query(sql`UPDATE espf.http_handler_envs SET auth_method = 'Signature' WHERE i_env = 5`), '23514',
        /^espf\.http_handler_envs\.signature_auth_key_id \(handler EventSender, i_env 5\): Signature auth needs both/],
    ];
    for (const [q, code, message] of cases) {
      const r = await refusal(q());
      assert.equal(r.code, code, r.message);
      assert.match(r.message, message);
      assert.doesNotMatch(r.message, /\n/);
    }
    assert.deepEqual(await envRows(db), before, 'nothing changed');
  });

  it('a change of the default row that leaves an environment\'s merged settings bad is refused, naming the environment', async () => {
    const { db } = t;
    // Basic in environment 7, its user and key inherited from the default row.
    await db.query(sql`INSERT INTO espf.http_handler_envs (handler, i_env, auth_method) VALUES ('EventSender', 7, 'Basic')`);
    const r2 = await refusal(db.query(sql`UPDATE espf.http_handlers SET auth_method = 'None', basic_auth_user = NULL WHERE handler = 'EventSender'`));
    assert.equal(r2.code, '23514');
    assert.match(r2.message, /^espf\.http_handler_envs\.basic_auth_user \(handler EventSender, i_env 7\): Basic auth needs both/);
    const [h] = await db.query(sql`SELECT auth_method, basic_auth_user FROM espf.http_handlers WHERE handler = 'EventSender'`);
    assert.deepEqual(h, { auth_method: 'Basic', basic_auth_user: 'global' });
    await db.query(sql`DELETE FROM espf.http_handler_envs WHERE i_env = 7`);
  });

  it('grants as espf.http_handlers: reporting reads no secret, the console may write', async () => {
    const { db } = t;
    await db.tx(async (tx) => {
      await tx.query(sql`SET LOCAL ROLE espf_reporting`);
      await tx.query(sql`SELECT handler, i_env, url, auth_method, basic_auth_user FROM espf.http_handler_envs`);
      const r = await refusal(tx.query(sql`SELECT basic_auth_key FROM espf.http_handler_envs`));
      assert.equal(r.code, '42501');
    });
    await db.tx(async (tx) => {
      await tx.query(sql`SET LOCAL ROLE espf_console`);
      await tx.query(sql`INSERT INTO espf.http_handler_envs (handler, i_env, token_rate) VALUES ('EventSender', 9, 2)`);
      await tx.query(sql`UPDATE espf.http_handler_envs SET token_rate = 3 WHERE i_env = 9`);
      await tx.query(sql`DELETE FROM espf.http_handler_envs WHERE i_env = 9`);
    });
  });
});

describe('settings per environment: delivery', function () {
  this.timeout(60_000);
  const f = deliveryFixture({
    types: TYPES, each: true, settings: { basic_auth_user: 'global', basic_auth_key: 'global-key', auth_method: 'Basic' },
    metrics: () => new Metrics({ processMetrics: false }),
  });
  let rxA: TestReceiver;
  let rxB: TestReceiver;
  beforeEach(async () => {
    rxA = await new TestReceiver().listen();
    rxB = await new TestReceiver().listen();
  });
  afterEach(async () => {
    await rxA.close();
    await rxB.close();
  });

  it('two environments with their receivers and credentials, a third without: each event to its own receiver with its credentials, the default for the rest', async () => {
    const { db } = f.t;
    await db.query(sql`INSERT INTO espf.http_handler_envs (handler, i_env, url, basic_auth_user, basic_auth_key) VALUES ('EventSender', 2, ${[rxA.url]}::text[], 'brand-a', 'key-a')`);
    await db.query(sql`INSERT INTO espf.http_handler_envs (handler, i_env, url, auth_method, custom_auth_type, custom_auth_credentials) VALUES ('EventSender', 3, ${[rxB.url]}::text[], 'Custom', 'Bearer', 'token-b')`);
    const byEnv = new Map<number, number[]>([[2, []], [3, []], [4, []]]);
    for (let i = 0; i < 5; i++) {
      for (const env of [2, 3, 4]) byEnv.get(env)!.push(await newAccount(db, f.ids, `env${env}-${i}`, env));
    }
    const has = (rx: TestReceiver, a: number) => rx.received.some((r) => r.json.variables.i_account === a);
    await eventually(async () => byEnv.get(2)!.every((a) => has(rxA, a)) && byEnv.get(3)!.every((a) => has(rxB, a)) && byEnv.get(4)!.every((a) => has(f.rx, a)), 15_000, 'every event at its receiver');
    await acknowledgedPastNow(db, f.run.sender.slot);
    for (const [rx, env, auth] of [[rxA, 2, basic('brand-a', 'key-a')], [rxB, 3, 'Bearer token-b'], [f.rx, 4, basic('global', 'global-key')]] as const) {
      for (const r of rx.arrived) {
        assert.equal(r.headers.authorization, auth, `credentials at the receiver of env ${env}`);
        assert.equal(r.json.variables.i_env, env);
      }
    }
    assert.equal(rxA.arrived.length + rxB.arrived.length + f.rx.arrived.length, 15, 'each event once');
  });

  it('environment A\'s receiver down (breaker open): environment B keeps delivering; the targets show each environment', async () => {
    const { db } = f.t;
    rxA.respond = () => ({ status: 503 });
    await db.query(sql`INSERT INTO espf.http_handler_envs (handler, i_env, url, breaker_failures, probe_delay, probe_max_delay, retry_delay)
                       VALUES ('EventSender', 2, ${[rxA.url]}::text[], 2, 3600, 3600, 0.05), ('EventSender', 3, ${[rxB.url]}::text[], NULL, NULL, NULL, NULL)`);
    const downA: number[] = [];
    for (let i = 0; i < 4; i++) downA.push(await newAccount(db, f.ids, `down-a-${i}`, 2));
    const h = () => f.run.sender.httpHandlers.get('EventSender')!;
    await eventually(async () => h().targetStates.some((s) => s.iEnv === 2 && !s.up), 15_000, 'env 2 target down');
    const b: number[] = [];
    for (let i = 0; i < 10; i++) b.push(await newAccount(db, f.ids, `up-b-${i}`, 3));
    const d: number[] = [];
    for (let i = 0; i < 3; i++) d.push(await newAccount(db, f.ids, `default-${i}`, 1));
    await rxB.waitFor(() => b.every((a) => rxB.received.some((r) => r.json.variables.i_account === a)), 15_000, 'env 3 events while env 2 is down');
    await f.rx.waitFor(() => d.every((a) => f.rx.received.some((r) => r.json.variables.i_account === a)), 15_000, 'default events while env 2 is down');
    const states = h().targetStates.map((s) => ({ iEnv: s.iEnv, up: s.up }));
    assert.deepEqual(states, [{ iEnv: null, up: true }, { iEnv: 2, up: false }, { iEnv: 3, up: true }]);
    await eventually(async () => {
      const rows = await db.query(sql`SELECT i_env, up FROM espf.target_states WHERE handler = 'EventSender' ORDER BY i_env NULLS FIRST`);
      return rows.some((r) => r.i_env === 2 && r.up === false) ? rows : undefined;
    }, 10_000, 'espf.target_states row of env 2 down');
    assert.equal(rxA.received.length, 0);
    const text = await f.metrics!.text();
    assert.match(text, new RegExp(`^espf_target_up\\{handler="EventSender",url="${rxA.url}",i_env="2"\\} 0$`, 'm'));
    assert.match(text, new RegExp(`^espf_target_up\\{handler="EventSender",url="${rxB.url}",i_env="3"\\} 1$`, 'm'));
    assert.match(text, new RegExp(`^espf_target_up\\{handler="EventSender",url="${f.rx.url}"\\} 1$`, 'm'));
    const status = formatStatus(await readStatus(db, { hours: 1, limit: 5 }), { hours: 1, limit: 5 });
    assert.match(status, /^handler +i_env +url +state/m);
    assert.match(status, new RegExp(`^EventSender +2 +${rxA.url.replace(/[.]/g, '\\.')} +DOWN `, 'm'));
    // The failure e-mail: the target of env 2 with the waiting deliveries of its lane only.
    const down = await eventually(async () => {
      const rows: UnreachableTarget[] = await db.query(sql`SELECT * FROM espf.down_targets('0 seconds')`);
      return rows.length === 1 && Number(rows[0]!.failing) === downA.length ? rows : undefined;
    }, 10_000, 'env 2 down with its 4 waiting deliveries');
    assert.equal(down[0]!.i_env, 2);
    const mail = composeDigest({ from: 'espf@example.net', to: ['noc@example.net'], instance: 'main', failed: [], unreachable: down, lagging: [] });
    assert.match(mail.text, new RegExp(`handler EventSender \\(instance main, i_env 2\\)  ${rxA.url.replace(/[.]/g, '\\.')}\n    down \\(circuit breaker open\\)[^\n]*; 4 deliveries waiting;`));
  });

  it('after a restart, deliveries read back from the database go to their environment\'s receiver, and only its target is restored down', async () => {
    const { db } = f.t;
    rxA.respond = () => ({ status: 503 });
    await db.query(sql`INSERT INTO espf.http_handler_envs (handler, i_env, url, breaker_failures, probe_delay, probe_max_delay, retry_delay)
                       VALUES ('EventSender', 2, ${[rxA.url]}::text[], 1, 0.5, 0.5, 0.05)`);
    const a = await newAccount(db, f.ids, 'restart-a', 2);
    await eventually(async () => {
      const [r] = await db.query(sql`SELECT up FROM espf.target_states WHERE handler = 'EventSender' AND i_env = 2`);
      return r?.up === false;
    }, 15_000, 'the target of env 2 down in espf.target_states');
    await f.run.stop();
    const [w] = await db.query(sql`SELECT state FROM espf.event_deliveries WHERE i_account = ${a}`);
    assert.ok(['PENDING', 'RETRY'].includes(w.state), `the delivery waits in the database (${w.state})`);
    rxA.respond = () => ({ status: 200 });
    const run = await f.startSender();
    const states = run.sender.httpHandlers.get('EventSender')!.targetStates.map((t) => ({ iEnv: t.iEnv, up: t.up }));
    assert.deepEqual(states, [{ iEnv: null, up: true }, { iEnv: 2, up: false }], 'env 2 restored down, the default up');
    await rxA.waitFor(() => rxA.received.some((r) => r.json.variables.i_account === a), 15_000, 'the waiting delivery at the receiver of env 2');
    assert.equal(f.rx.arrived.filter((r) => r.json.variables.i_account === a).length, 0, 'sent to the default receiver');
  });

  it('a low token rate in one environment does not slow another', async () => {
    const { db } = f.t;
    await db.query(sql`UPDATE espf.http_handlers SET token_rate = 1000, token_burstiness = 1000 WHERE handler = 'EventSender'`);
    await db.query(sql`INSERT INTO espf.http_handler_envs (handler, i_env, url, token_rate, token_burstiness) VALUES ('EventSender', 2, ${[rxA.url]}::text[], 1, 1),
                       ('EventSender', 3, ${[rxB.url]}::text[], NULL, NULL)`);
    const slow: number[] = [];
    const fast: number[] = [];
    await db.tx(async (tx) => {
      for (let i = 0; i < 10; i++) slow.push(await newAccount(tx, f.ids, `slow-${i}`, 2));
      for (let i = 0; i < 20; i++) fast.push(await newAccount(tx, f.ids, `fast-${i}`, 3));
    });
    await rxB.waitFor(() => fast.every((a) => rxB.received.some((r) => r.json.variables.i_account === a)), 15_000, 'the fast environment');
    assert.ok(rxA.received.length <= 5, `the slow environment (1/s) delivered ${rxA.received.length} of 10 by the time the other had all 20`);
    await rxA.waitFor(() => slow.every((a) => rxA.received.some((r) => r.json.variables.i_account === a)), 30_000, 'the slow environment, at last');
  });
});

describe('settings per environment: espf handler set and show', function () {
  this.timeout(60_000);
  let t: TestDatabase;
  before(async () => { t = await createTestDatabase(); });
  after(async () => { await t.drop(); });
  const run = (...args: string[]) => espf(args, { DATABASE_URL: t.url });

  it('set --env makes the row, show lists and merges it, key= inherits again, --reset drops it', async () => {
    let r = await run('handler', 'set', 'EventSender', 'url=http://127.0.0.1:9/global,http://127.0.0.1:9/second', 'auth_method=Basic', 'basic_auth_user=g', 'basic_auth_key=secret-g');
    assert.equal(r.code, 0, show(r));
    r = await run('handler', 'set', 'EventSender', '--env', '2', 'url=http://127.0.0.1:9/two', 'basic_auth_key=env:ESPF_SECRET_TWO', 'token_rate=3');
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout, 'handler EventSender i_env 2: set url, basic_auth_key, token_rate\n');
    r = await run('handler', 'show', 'EventSender');
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^ {2}url +http:\/\/127\.0\.0\.1:9\/global,http:\/\/127\.0\.0\.1:9\/second$/m);
    assert.match(r.stdout, /^ {2}basic_auth_key +\(set\)$/m);
    assert.doesNotMatch(r.stdout, /secret-g/);
    assert.match(r.stdout, /^environments with settings of their own: 2 /m);
    r = await run('handler', 'show', 'EventSender', '--env', '2');
    assert.equal(r.code, 0, show(r));
    assert.match(r.stdout, /^ {2}url +http:\/\/127\.0\.0\.1:9\/two$/m);
    assert.match(r.stdout, /^ {2}basic_auth_user +g +\(default\)$/m);
    assert.match(r.stdout, /^ {2}basic_auth_key +env:ESPF_SECRET_TWO$/m);
    assert.match(r.stdout, /^ {2}token_rate +3$/m);
    r = await run('handler', 'set', 'EventSender', '--env', '2', 'token_rate=');
    assert.equal(r.code, 0, show(r));
    const [row] = await t.db.query(sql`SELECT token_rate, url FROM espf.http_handler_envs WHERE handler = 'EventSender' AND i_env = 2`);
    assert.deepEqual(row, { token_rate: null, url: ['http://127.0.0.1:9/two'] });
    r = await run('handler', 'set', 'EventSender', '--env', '2', '--reset');
    assert.equal(r.code, 0, show(r));
    assert.equal(r.stdout, 'handler EventSender i_env 2: settings dropped, its events use the default row\n');
    assert.deepEqual(await envRows(t.db), []);
    r = await run('handler', 'show', 'EventSender', '--env', '2');
    assert.match(r.stdout, /i_env 2: no settings of its own/);
  });

  it('bad arguments are refused by the CLI in one line (exit 2), bad values by the database (exit 1); nothing changes', async () => {
    await t.db.query(sql`INSERT INTO espf.http_handler_envs (handler, i_env, token_rate) VALUES ('EventSender', 4, 2)`);
    const before = await envRows(t.db);
    for (const [args, code, line] of [
      [['--env', 'two', 'token_rate=1'], 2, /^espf: --env: 'two' is not an i_env/],
      [['--env', '2', 'no_such=1'], 2, /^espf: 'no_such' is not a column of espf\.http_handler_envs/],
      [['--env', '2', 'async_mode=false'], 2, /^espf: 'async_mode' is not a column of espf\.http_handler_envs/],
      [['--env', '2', 'token_rate'], 2, /^espf: 'token_rate' is not column=value/],
      [['--env', '2'], 2, /^espf: nothing to set/],
      [['--reset'], 2, /^espf: --reset needs --env N/],
      [['--env', '4', '--reset', 'token_rate=1'], 2, /^espf: --reset takes no column=value/],
      [['--env', '2', 'token_rate=0'], 1, /^espf: espf\.http_handler_envs\.token_rate \(handler EventSender, i_env 2\): must be > 0/],
      [['--env', '4', 'url=ftp://x'], 1, /^espf: espf\.http_handler_envs\.url \(handler EventSender, i_env 4\): 'ftp:\/\/x' is not an http\(s\) URL/],
    ] as const) {
      const r = await run('handler', 'set', 'EventSender', ...args);
      assert.equal(r.code, code, show(r));
      assert.match(r.stderr, line);
      assert.equal(r.stderr.trim().split('\n').length, 1, show(r));
    }
    const r = await run('handler', 'set', 'NoSuch', '--env', '2', 'token_rate=1');
    assert.equal(r.code, 1, show(r));
    assert.match(r.stderr, /^espf: espf\.http_handler_envs\.handler: 'NoSuch' is not an http handler/);
    assert.deepEqual(await envRows(t.db), before, 'nothing changed');
  });
});

describe('settings per environment: the console\'s handler form', function () {
  this.timeout(60_000);
  let t: TestDatabase;
  let base = '';
  let close: () => Promise<void>;
  const c = consoleHttp(() => base);
  before(async () => {
    t = await createTestDatabase();
    await enableConsole(t.db);
    await t.db.query(sql`UPDATE espf.http_handlers SET url = '{http://127.0.0.1:9/global}', auth_method = 'Custom', custom_auth_type = 'Bearer', custom_auth_credentials = 'global-token' WHERE handler = 'EventSender'`);
    const s = await startConsoleServer(t.db, t.url);
    base = s.base;
    close = () => s.server.close();
  });
  after(async () => { await close(); await t.drop(); });

  it('lists the environments, an admin edits one (empty inherits), a bad value is refused in place, a viewer may not change it', async () => {
    const admin = await c.login(ADMIN);
    let page = await c.get(admin.cookie, '/console/handlers/EventSender');
    assert.match(page.text, /No environment has settings of its own/);
    const open = await c.get(admin.cookie, '/console/handlers/EventSender/env?i_env=2');
    assert.equal(open.status, 303);
    page = await c.get(admin.cookie, '/console/handlers/EventSender/env/2');
    assert.equal(page.status, 200);
    assert.match(page.text, /none yet/);
    assert.match(page.text, /placeholder="default: http:\/\/127\.0\.0\.1:9\/global"/);
    assert.doesNotMatch(page.text, /global-token/);
    // A new host with the inherited credentials: type them again.
    let r = await c.form('/console/handlers/EventSender/env/2', { _csrf: admin.csrf, url: 'http://127.0.0.2:9/two', token_rate: '' }, { cookie: admin.cookie });
    assert.equal(r.status, 422);
    assert.match(await r.text(), /is a new host for the custom_auth_credentials/);
    r = await c.form('/console/handlers/EventSender/env/2', { _csrf: admin.csrf, url: 'http://127.0.0.2:9/two', custom_auth_credentials: 'token-two', token_rate: '4' }, { cookie: admin.cookie });
    assert.equal(r.status, 303, await r.text());
    const [row] = await t.db.query(sql`SELECT url, custom_auth_credentials, token_rate::float8 AS token_rate, auth_method FROM espf.http_handler_envs WHERE i_env = 2`);
    assert.deepEqual(row, { url: ['http://127.0.0.2:9/two'], custom_auth_credentials: 'token-two', token_rate: 4, auth_method: null });
    r = await c.form('/console/handlers/EventSender/env/2', { _csrf: admin.csrf, url: 'http://127.0.0.2:9/two', token_rate: 'NaN' }, { cookie: admin.cookie });
    assert.equal(r.status, 422);
    assert.match(await r.text(), /token_rate/);
    r = await c.form('/console/handlers/EventSender/env/2', { _csrf: admin.csrf, url: 'http://127.0.0.2:9/two', token_rate: '0' }, { cookie: admin.cookie });
    assert.equal(r.status, 422);
    assert.match(await r.text(), /espf\.http_handler_envs\.token_rate \(handler EventSender, i_env 2\): must be &gt; 0/);
    page = await c.get(admin.cookie, '/console/handlers/EventSender');
    assert.match(page.text, /href="\/console\/handlers\/EventSender\/env\/2">i_env 2</);
    const viewer = await c.login(VIEWER);
    r = await c.form('/console/handlers/EventSender/env/2/delete', { _csrf: viewer.csrf }, { cookie: viewer.cookie });
    assert.equal(r.status, 403);
    r = await c.form('/console/handlers/EventSender/env/2', { _csrf: 'wrong', token_rate: '5' }, { cookie: admin.cookie });
    assert.equal(r.status, 403);
    assert.equal((await envRows(t.db)).length, 1);
    r = await c.form('/console/handlers/EventSender/env/2/delete', { _csrf: admin.csrf }, { cookie: admin.cookie });
    assert.equal(r.status, 303);
    assert.deepEqual(await envRows(t.db), []);
    const audit = await t.db.query(sql`SELECT action, target FROM espf.console_audit WHERE action LIKE 'http handler environment%' ORDER BY i_audit`);
    assert.deepEqual(audit.map((a) => a.action), ['http handler environment update', 'http handler environment drop']);
  });
});

describe('settings per environment: upgrade from the previous release (migrations/0025_http_handler_envs.sql)', function () {
  it('keeps events, deliveries, settings and target states; target states get i_env null and a key per environment', async function () {
    this.timeout(60_000);
    const at = await databaseAtPreviousRelease('0025_http_handler_envs.sql', ['026_http_handler_envs.sql']);
    if (!at) this.skip(); // not a git checkout
    const { db } = at!;
    try {
      await db.query(sql`UPDATE espf.http_handlers SET url = '{http://127.0.0.1:9/x}', token_rate = 7 WHERE handler = 'EventSender'`);
      await db.query(sql`UPDATE espf.handlers SET enabled = true WHERE name = 'EventSender'`);
      await db.query(sql`INSERT INTO espf.events (i_event, event_type, variables)
                         SELECT g, 'Account/New', jsonb_build_object('i_event', g, 'i_account', g, 'i_env', 1 + g % 3) FROM generate_series(1, 30) g`);
      await db.query(sql`INSERT INTO espf.event_deliveries (i_event, handler, state, event_type, order_key, i_account, instance, commit_lsn, attempts)
                         SELECT g, 'EventSender', CASE WHEN g <= 10 THEN 'DELIVERED' WHEN g <= 20 THEN 'RETRY' ELSE 'PENDING' END,
                                'Account/New', 'a:' || g, g, 'main', ('0/' || to_hex(1000 + g))::pg_lsn, CASE WHEN g <= 20 THEN 1 ELSE 0 END
                           FROM generate_series(1, 30) g`);
      await db.query(sql`SELECT espf.note_target_state('EventSender', 'http://127.0.0.1:9/x', 'main', false, now(), 10, 1, now(), 503, 'down')`);
      const deliveries = await db.query(sql`SELECT to_jsonb(d) AS d FROM espf.event_deliveries d ORDER BY i_event`);
      const r = await migrate(db);
      assert.ok(r.applied.includes('0025_http_handler_envs.sql'), `applied ${r.applied.join(', ')}`);
      assert.deepEqual(await db.query(sql`SELECT to_jsonb(d) AS d FROM espf.event_deliveries d ORDER BY i_event`), deliveries);
      const [h] = await db.query(sql`SELECT url, token_rate::float8 AS token_rate FROM espf.http_handlers WHERE handler = 'EventSender'`);
      assert.deepEqual(h, { url: ['http://127.0.0.1:9/x'], token_rate: 7 });
      assert.deepEqual(await db.query(sql`SELECT handler, url, i_env, up FROM espf.target_states`), [{ handler: 'EventSender', url: 'http://127.0.0.1:9/x', i_env: null, up: false }]);
      // The same target again replaces its row; the same URL for environment 2 is a row of its own.
      await db.query(sql`SELECT espf.note_target_state('EventSender', 'http://127.0.0.1:9/x', 'main', true, now(), 0, 0, NULL, 200, NULL, NULL)`);
      await db.query(sql`SELECT espf.note_target_state('EventSender', 'http://127.0.0.1:9/x', 'main', false, now(), 10, 0, NULL, 503, 'down', 2)`);
      assert.deepEqual(await db.query(sql`SELECT i_env, up FROM espf.target_states ORDER BY i_env NULLS FIRST`), [{ i_env: null, up: true }, { i_env: 2, up: false }]);
      const page = await db.query(sql`SELECT i_event FROM espf.waiting_page('EventSender', NULL, 0, 100)`);
      assert.deepEqual(page.map((p) => Number(p.i_event)), Array.from({ length: 20 }, (_, i) => 11 + i));
      await db.query(sql`INSERT INTO espf.http_handler_envs (handler, i_env, url) VALUES ('EventSender', 2, '{http://127.0.0.1:9/two}')`);
      const [doc] = await db.query(sql`SELECT h -> 'envs' -> '2' ->> 'url' AS url FROM jsonb_array_elements(espf.config_document()) h WHERE h ->> 'name' = 'EventSender'`);
      assert.equal(doc.url, '["http://127.0.0.1:9/two"]');
      assert.deepEqual((await migrate(db)).applied, [], 'a second migrate applies nothing');
    } finally {
      await at!.dispose();
    }
  });
});
