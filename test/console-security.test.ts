import assert from 'node:assert/strict';
import { sql } from '@databases/pg';
import { ADMIN, consoleHttp, enableConsole, postLogin, startConsoleServer, VIEWER } from './support/console.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { eventually, TestReceiver } from './support/receiver.ts';
import { resolveSecret, SECRET_ENV_PREFIX } from '../src/security/secret-ref.ts';

/**
 * The console and the secrets behind it, over real HTTP against a real
 * database (docs/console.md "Security", docs/security.md "Secrets: env:NAME"):
 * env:NAME limited to ESPF_SECRET_*, stored secrets withheld from a new
 * origin, test events audited, "Resend all matching" narrowed, confirmed,
 * capped, one at a time and cancellable, and login limiting that cannot be raced.
 */
describe('console: secrets, resends and logins', function () {
  // Not test/support/fixture.ts: no sender runs; the receivers are targets the console under test points EventSender at.
  this.timeout(60_000);
  let t: TestDatabase;
  let base: string;
  let close: () => Promise<void>;
  let rx: TestReceiver;
  let other: TestReceiver;

  before(async () => {
    t = await createTestDatabase();
    await enableConsole(t.db);
    const s = await startConsoleServer(t.db, t.url);
    base = s.base;
    close = () => s.server.close();
    rx = await new TestReceiver().listen();
    other = await new TestReceiver().listen();
  });
  after(async () => {
    await close?.();
    await rx?.close();
    await other?.close();
    await t?.drop();
  });

  const { form, login } = consoleHttp(() => base);
  async function audit(action: string) {
    return t.db.query(sql`SELECT user_name, target, before, after FROM espf.console_audit WHERE action = ${action} ORDER BY i_audit`);
  }

  describe('env:NAME', () => {
    it('the database refuses a name without the ESPF_SECRET_ prefix in every secret column; the prefix is the resolver\'s', async () => {
      const [{ p }] = await t.db.query(sql`SELECT espf.secret_env_prefix() AS p`);
      assert.equal(p, SECRET_ENV_PREFIX);
      for (const [q, column] of [
        [sql`UPDATE espf.http_handlers SET custom_auth_credentials = 'env:DATABASE_URL' WHERE handler = 'EventSender'`, 'espf.http_handlers.custom_auth_credentials'],
        [sql`UPDATE espf.http_handlers SET basic_auth_user = 'env:HOME' WHERE handler = 'EventSender'`, 'espf.http_handlers.basic_auth_user'],
        [sql`UPDATE espf.http_handlers SET signature_auth_key = 'env:ESPF_CONSOLE_PASSWORD' WHERE handler = 'EventSender'`, 'espf.http_handlers.signature_auth_key'],
        [sql`UPDATE espf.http_handlers SET basic_auth_key = 'env:ESPF_SECRET_' WHERE handler = 'EventSender'`, 'espf.http_handlers.basic_auth_key'],
        [sql`UPDATE espf.status_api SET token = 'env:PGPASSWORD'`, 'espf.status_api.token'],
        [sql`UPDATE espf.notifications SET smtp_url = 'env:DATABASE_URL'`, 'espf.notifications.smtp_url'],
      ] as const) {
        await assert.rejects(t.db.query(q), (err: Error & { code?: string }) => {
          assert.equal(err.code, '23514');
          assert.match(err.message, new RegExp(`^${column.replace(/\./g, '\\.')}: 'env:[A-Z_]*' names a variable espf run does not read for rows: the name must start with ESPF_SECRET_`));
          return true;
        });
      }
      await t.db.query(sql`UPDATE espf.http_handlers SET basic_auth_key = 'env:ESPF_SECRET_HSS' WHERE handler = 'EventSender'`);
      await t.db.query(sql`UPDATE espf.http_handlers SET basic_auth_key = NULL WHERE handler = 'EventSender'`);
    });

    it('the resolver refuses the same names, even when set, and reads a legacy name only when the operator lists it (never DATABASE_URL)', () => {
      const env = { DATABASE_URL: 'postgres://espf_run:pw@db/billing', HSS_KEY: 'k1', ESPF_SECRET_HSS: 'k2', ESPF_LEGACY_SECRET_NAMES: 'HSS_KEY, DATABASE_URL' };
      assert.throws(() => resolveSecret('env:DATABASE_URL', 'custom_auth_credentials', env),
        { code: 'ESPF_SECRET_NOT_ALLOWED', message: 'custom_auth_credentials names the environment variable DATABASE_URL, which espf does not read for rows: use a name starting with ESPF_SECRET_ (docs/security.md)' });
      assert.equal(resolveSecret('env:HSS_KEY', 'basic_auth_key', env), 'k1');
      assert.throws(() => resolveSecret('env:HSS_KEY', 'basic_auth_key', { HSS_KEY: 'k1' }), { code: 'ESPF_SECRET_NOT_ALLOWED' });
      assert.equal(resolveSecret('env:ESPF_SECRET_HSS', 'basic_auth_key', env), 'k2');
    });

    it('a row written before the rule (env:DATABASE_URL) is not resolved by "Send a test event": the receiver gets no auth header, the audit has the test', async () => {
      await t.db.query(sql`ALTER TABLE espf.http_handlers DISABLE TRIGGER check_secret_env_names`);
      await t.db.query(sql`UPDATE espf.http_handlers SET url = ${[rx.url]}::text[], auth_method = 'Custom', custom_auth_type = 'Bearer',
                                  custom_auth_credentials = 'env:DATABASE_URL' WHERE handler = 'EventSender'`);
      await t.db.query(sql`ALTER TABLE espf.http_handlers ENABLE TRIGGER check_secret_env_names`);
      const saved = process.env.DATABASE_URL;
      const sentBefore = rx.arrived.length;
      process.env.DATABASE_URL = 'postgres://espf_run:the-replication-password@db/billing';
      try {
        const { cookie, csrf } = await login(ADMIN);
        const r = await form('/console/handlers/EventSender/test', { _csrf: csrf }, { cookie });
        assert.equal(r.status, 200);
        assert.match(await r.text(), /custom_auth_credentials names the environment variable DATABASE_URL, which espf does not read for rows/);
        assert.equal(rx.arrived.length, sentBefore, 'nothing was sent');
        // Saving another column of the old row is fine; writing a new name without the prefix is not.
        assert.equal((await form('/console/handlers/EventSender', { _csrf: csrf, request_timeout: '30' }, { cookie })).status, 303);
        const again = await form('/console/handlers/EventSender', { _csrf: csrf, custom_auth_credentials: 'env:HOME' }, { cookie });
        assert.equal(again.status, 422);
        assert.match(await again.text(), /id="f_custom_auth_credentials_err" role="alert">espf\.http_handlers\.custom_auth_credentials: &#39;env:HOME&#39; names a variable/);
      } finally {
        if (saved === undefined) delete process.env.DATABASE_URL; else process.env.DATABASE_URL = saved;
      }
      const [test] = (await audit('test event')).slice(-1);
      assert.equal(test.user_name, ADMIN.user);
      assert.equal(test.target, 'EventSender');
      assert.deepEqual(test.after.answers.map((a: { url: string }) => a.url), [rx.url]);
      assert.doesNotMatch(JSON.stringify(await t.db.query(sql`SELECT * FROM espf.console_audit`)), /the-replication-password/);
    });
  });

  it('stored secrets are not sent to a new origin: changing only the URL is refused at the URL field until they are typed again', async () => {
    await t.db.query(sql`UPDATE espf.http_handlers SET url = ${[rx.url]}::text[], auth_method = 'Custom', custom_auth_type = 'Bearer',
                                custom_auth_credentials = 'stored-credential-1234' WHERE handler = 'EventSender'`);
    const { cookie, csrf } = await login(ADMIN);
    const moved = other.url.replace('/events', '/x');
    const r = await form('/console/handlers/EventSender', { _csrf: csrf, url: moved }, { cookie });
    assert.equal(r.status, 422);
    assert.match(await r.text(), new RegExp(`id="f_url_err" role="alert">espf\\.http_handlers\\.url: ${new URL(moved).origin.replace(/\./g, '\\.')} is a new host for the stored custom_auth_credentials: type the secret again`));
    const [row] = await t.db.query(sql`SELECT url, custom_auth_credentials FROM espf.http_handlers WHERE handler = 'EventSender'`);
    assert.deepEqual(row, { url: [rx.url], custom_auth_credentials: 'stored-credential-1234' });
    // A test now goes to the old URL only.
    assert.equal((await form('/console/handlers/EventSender/test', { _csrf: csrf }, { cookie })).status, 200);
    assert.equal(other.arrived.length, 0);
    assert.equal(rx.arrived.at(-1)?.headers.authorization, 'Bearer stored-credential-1234');
    // Another path on the same origin is fine; a new origin with the secret typed again is too.
    assert.equal((await form('/console/handlers/EventSender', { _csrf: csrf, url: rx.url.replace('/events', '/v2') }, { cookie })).status, 303);
    assert.equal((await form('/console/handlers/EventSender', { _csrf: csrf, url: moved, custom_auth_credentials: 'typed-for-the-new-host' }, { cookie })).status, 303);
    const [row2] = await t.db.query(sql`SELECT url, custom_auth_credentials FROM espf.http_handlers WHERE handler = 'EventSender'`);
    assert.deepEqual(row2, { url: [moved], custom_auth_credentials: 'typed-for-the-new-host' });
  });

  describe('resend all matching', () => {
    before(async () => {
      await t.db.query(sql`INSERT INTO espf.handlers (name, kind, instance) VALUES ('Archive', 'http', 'archive')`);
      await t.db.query(sql`INSERT INTO espf.http_handlers (handler, url) VALUES ('Archive', '{http://127.0.0.1:9/never}')`);
      await t.db.query(sql`
        INSERT INTO espf.event_deliveries (i_event, handler, state, event_type, order_key, i_account, instance, attempts, urls_done, finished_at)
        SELECT g, 'Archive', CASE WHEN g % 2 = 0 THEN 'FAILED' ELSE 'DELIVERED' END, 'Account/New', 'a:' || g, g, 'archive', 3, 1, now() - interval '1 hour'
          FROM generate_series(1, 5000) g`);
    });
    const requeued = async () => Number((await t.db.query(sql`SELECT count(*) AS n FROM espf.event_deliveries WHERE requeued`))[0].n);

    it('is refused without a narrowing filter (no filter, a handler alone, state DELIVERED alone), and changes nothing', async () => {
      const { cookie, csrf } = await login(ADMIN);
      for (const f of [{}, { f_handler: 'Archive' }, { f_state: 'DELIVERED' }, { f_type: 'Account/New' }] as Record<string, string>[]) {
        const r = await form('/console/deliveries/resend', { _csrf: csrf, mode: 'all', ...f }, { cookie });
        assert.equal(r.status, 422, JSON.stringify(f));
        assert.match(await r.text(), /needs a narrower filter/);
        const c = await form('/console/deliveries/resend', { _csrf: csrf, mode: 'confirm', count: '99999999', ...f }, { cookie });
        assert.equal(c.status, 422, `a forged confirmation: ${JSON.stringify(f)}`);
      }
      assert.equal(await requeued(), 0);
      assert.equal((await audit('resend matching')).length, 0);
    });

    it('shows the count first; one job at a time per instance; cancel stops it between batches; start and cancel audited', async () => {
      const { cookie, csrf } = await login(ADMIN);
      const f = { f_state: 'FAILED', f_handler: 'Archive' };
      const ask = await form('/console/deliveries/resend', { _csrf: csrf, mode: 'all', ...f }, { cookie });
      assert.equal(ask.status, 200);
      const text = await ask.text();
      assert.match(text, /<b>2500<\/b> finished deliveries match handler Archive, state FAILED/);
      assert.match(text, /name="count" value="2500"/);
      assert.equal(await requeued(), 0, 'nothing before the confirmation');
      // A lock holds the first batch: the job is running while we look.
      const lock = await t.db.tx(async (tx) => {
        await tx.query(sql`LOCK TABLE espf.event_deliveries IN EXCLUSIVE MODE`);
        const start = await form('/console/deliveries/resend', { _csrf: csrf, mode: 'confirm', count: '2500', ...f }, { cookie });
        assert.equal(start.status, 303);
        const job = start.headers.get('location')!;
        assert.match(job, /^\/console\/jobs\/[a-f0-9]{16}$/);
        const second = await form('/console/deliveries/resend', { _csrf: csrf, mode: 'confirm', count: '2500', ...f }, { cookie });
        assert.equal(second.headers.get('location'), job, 'a second start shows the running job');
        const page = await (await fetch(`${base}${job}`, { headers: { cookie } })).text();
        assert.match(page, /Re-queueing… 0 of 2500/);
        assert.match(page, new RegExp(`action="${job}/cancel"`));
        const viewer = await login(VIEWER);
        assert.equal((await form(`${job}/cancel`, { _csrf: viewer.csrf }, { cookie: viewer.cookie })).status, 403);
        assert.equal((await form(`${job}/cancel`, { _csrf: csrf }, { cookie })).status, 303);
        return job;
      });
      const done = await eventually(async () => {
        const page = await (await fetch(`${base}${lock}`, { headers: { cookie } })).text();
        return /Cancelled by alice\. 1000 of 2500 deliveries re-queued/.test(page);
      }, 10_000, 'the job cancelled after its first batch');
      assert.ok(done);
      assert.equal(await requeued(), 1000);
      const [start] = await audit('resend matching');
      assert.deepEqual({ user: start.user_name, filter: start.before.filter, after: start.after }, { user: ADMIN.user, filter: { handler: 'Archive', state: 'FAILED' }, after: { matching: 2500, cap: 100000 } });
      const cancelled = await eventually(async () => (await audit('resend matching cancelled'))[0], 5000, 'the cancel audited');
      assert.equal(cancelled.after.requeued, 1000);
    });

    it('re-queues at most espf.console.resend_max_rows per job, and a count that grew since it was confirmed is asked again', async () => {
      await t.db.query(sql`UPDATE espf.console SET resend_max_rows = 1200`);
      const { cookie, csrf } = await login(ADMIN);
      const f = { f_state: 'FAILED', f_handler: 'Archive' };
      const grew = await form('/console/deliveries/resend', { _csrf: csrf, mode: 'confirm', count: '100', ...f }, { cookie });
      assert.equal(grew.status, 200);
      const text = await grew.text();
      assert.match(text, /The count changed to 1500 since you confirmed 100: confirm again/);
      assert.match(text, /One job re-queues at most 1200/);
      assert.equal(await requeued(), 1000);
      const start = await form('/console/deliveries/resend', { _csrf: csrf, mode: 'confirm', count: '1500', ...f }, { cookie });
      const job = start.headers.get('location')!;
      await eventually(async () => /Done\. 1200 of 1500 deliveries re-queued/.test(await (await fetch(`${base}${job}`, { headers: { cookie } })).text()), 10_000, 'the capped job');
      assert.equal(await requeued(), 2200);
    });
  });

  describe('login limiting', () => {
    it('counts 20 concurrent wrong passwords before awaiting: at most login_attempts reach the check, the rest wait (429); audited', async () => {
      await t.db.query(sql`UPDATE espf.console SET login_attempts = 5, trusted_proxies = '{}'`);
      const before = (await audit('login failed')).length;
      const answers = await Promise.all(Array.from({ length: 20 }, () => postLogin(base, { user: VIEWER.user, password: 'wrong password!' })));
      const codes = answers.map((a) => a.status);
      const wrong = codes.filter((c) => c === 401).length;
      assert.equal(codes.filter((c) => c === 429).length + wrong, 20, codes.join(','));
      assert.ok(wrong >= 1 && wrong <= 5, `${wrong} of 20 reached the password check`);
      assert.equal(codes.filter((c) => c === 401).length, wrong);
      assert.equal((await audit('login failed')).length - before, wrong);
      // From this address the user now waits, even with the right password, and X-Forwarded-For from an untrusted peer changes nothing.
      assert.equal((await postLogin(base, { user: VIEWER.user, password: VIEWER.password })).status, 429);
      assert.equal((await postLogin(base, { user: VIEWER.user, password: VIEWER.password }, { 'x-forwarded-for': '203.0.113.7' })).status, 429);
    });

    it('limits per (address, user): from another address (X-Forwarded-For of a configured proxy) the user logs in', async () => {
      await t.db.query(sql`UPDATE espf.console SET trusted_proxies = '{127.0.0.1, ::1}'`);
      const r = await postLogin(base, { user: VIEWER.user, password: VIEWER.password }, { 'x-forwarded-for': '198.51.100.1, 203.0.113.7' });
      assert.equal(r.status, 303);
      const [a] = (await audit('login')).slice(-1);
      assert.deepEqual({ user: a.user_name, from: a.target }, { user: VIEWER.user, from: '203.0.113.7' });
      // Another user from the blocked address is not blocked by the victor's count.
      assert.equal((await postLogin(base, { user: ADMIN.user, password: ADMIN.password })).status, 303);
    });
  });
});
