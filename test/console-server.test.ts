import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from '@databases/pg';
import { connect } from '../src/db/connect.ts';
import { migrate } from '../src/migrate/migrate.ts';
import { MIGRATIONS_DIR, REPEATABLE_SQL_DIR } from '../src/paths.ts';
import { spawnEspf } from './support/cli.ts';
import { testServer, withDatabase } from './support/cluster.ts';
import { addAccounts, seedCustomer } from './support/sender.ts';
import { hashPassword, verifyPassword } from '../src/console/auth.ts';
import { main } from '../src/cli/main.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { ADMIN, enableConsole, postLogin, startConsoleServer, VIEWER } from './support/console.ts';

/**
 * The console's server-side checks, over real HTTP without a browser: off until
 * configured, login, sessions, CSRF, roles, the database's refusals, the audit.
 */
describe('console: server side', function () {
  let t: TestDatabase;
  let base: string;
  let close: () => Promise<void>;

  before(async () => {
    t = await createTestDatabase();
    const s = await startConsoleServer(t.db, t.url);
    base = s.base;
    close = () => s.server.close();
  });
  after(async () => {
    await close?.();
    await t?.drop();
  });

  async function login(who: { user: string; password: string }): Promise<string> {
    const r = await postLogin(base, { user: who.user, password: who.password, next: '/console/' });
    assert.equal(r.status, 303, await r.text());
    const cookie = r.headers.get('set-cookie') ?? '';
    return cookie.split(';')[0]!;
  }

  async function page(cookie: string, p: string): Promise<{ status: number; text: string; csrf: string }> {
    const r = await fetch(`${base}${p}`, { headers: { cookie }, redirect: 'manual' });
    const text = await r.text();
    const csrf = /name="_csrf" value="([^"]*)"/.exec(text)?.[1] ?? '';
    return { status: r.status, text, csrf };
  }

  function post(cookie: string, p: string, form: Record<string, string>, headers: Record<string, string> = {}) {
    return fetch(`${base}${p}`, {
      method: 'POST', redirect: 'manual',
      headers: { cookie, 'content-type': 'application/x-www-form-urlencoded', ...headers },
      body: new URLSearchParams(form).toString(),
    });
  }

  async function subscribed(type: string): Promise<boolean> {
    const rows = await t.db.query(sql`SELECT 1 FROM espf.subscriptions WHERE handler = 'EventSender' AND event_type = ${type}`);
    return rows.length === 1;
  }

  it('is off until enabled with a user: 404 with how to turn it on', async () => {
    const r = await fetch(`${base}/console/`);
    assert.equal(r.status, 404);
    assert.match(await r.text(), /espf\.console\.enabled is false/);
    await t.db.query(sql`UPDATE espf.console SET enabled = true`);
    const r2 = await fetch(`${base}/console/login`);
    assert.equal(r2.status, 404);
    assert.match(await r2.text(), /no users/);
    await t.db.query(sql`UPDATE espf.console SET enabled = false`);
  });

  it('espf console user add takes the password from stdin or the environment, never argv, and stores only an scrypt hash', async () => {
    const out: string[] = [];
    const err: string[] = [];
    const io = { out: (s: string) => { out.push(s); }, err: (s: string) => { err.push(s); } };
    const saved = { url: process.env.DATABASE_URL, pw: process.env.ESPF_CONSOLE_PASSWORD };
    process.env.DATABASE_URL = t.url;
    try {
      process.env.ESPF_CONSOLE_PASSWORD = 'short';
      assert.equal(await main(['node', 'espf', 'console', 'user', 'add', 'carol', '--role', 'admin'], io), 2);
      assert.match(err.join(''), /at least 10 characters/);
      process.env.ESPF_CONSOLE_PASSWORD = 'a long enough password';
      assert.equal(await main(['node', 'espf', 'console', 'user', 'add', 'carol', '--role', 'root'], io), 2);
      assert.match(err.join(''), /--role 'root'/);
      assert.equal(await main(['node', 'espf', 'console', 'user', 'add', 'carol', '--role', 'viewer', '--password', 'x'], io), 2);
      assert.equal(await main(['node', 'espf', 'console', 'user', 'add', 'carol', '--role', 'viewer'], io), 0, err.join(''));
      assert.match(out.join(''), /console user carol added \(viewer\)/);
      const [row] = await t.db.query(sql`SELECT role, password_hash FROM espf.console_users WHERE name = 'carol'`);
      assert.equal(row.role, 'viewer');
      assert.match(row.password_hash, /^scrypt\$131072\$8\$1\$/, 'the default cost, 2^17');
      assert.doesNotMatch(row.password_hash, /long enough/);
      assert.ok(await verifyPassword('a long enough password', row.password_hash));
      assert.equal(await verifyPassword('a long enough passworD', row.password_hash), false);
      assert.equal(await main(['node', 'espf', 'console', 'user', 'remove', 'carol'], io), 0);
    } finally {
      process.env.DATABASE_URL = saved.url;
      if (saved.url === undefined) delete process.env.DATABASE_URL;
      if (saved.pw === undefined) delete process.env.ESPF_CONSOLE_PASSWORD; else process.env.ESPF_CONSOLE_PASSWORD = saved.pw;
    }
  });

  it('espf console user add reads the password from standard input (a real child process)', async () => {
    const child = spawnEspf(['console', 'user', 'add', 'dave', '--role', 'admin'], {
      env: { DATABASE_URL: t.url, ESPF_CONSOLE_PASSWORD: undefined }, stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout!.on('data', (b: Buffer) => { out += b; });
    child.stderr!.on('data', (b: Buffer) => { err += b; });
    child.stdin!.end('from stdin 0123\nignored second line\n');
    const code = await new Promise((resolve) => child.on('close', resolve));
    assert.equal(code, 0, err);
    assert.equal(out, 'console user dave added (admin)\n');
    const [row] = await t.db.query(sql`SELECT password_hash FROM espf.console_users WHERE name = 'dave'`);
    assert.ok(await verifyPassword('from stdin 0123', row.password_hash));
    await t.db.query(sql`DELETE FROM espf.console_users WHERE name = 'dave'`);
  });

  it('the database refuses a user row without an scrypt hash or with an unknown role', async () => {
    await assert.rejects(t.db.query(sql`INSERT INTO espf.console_users (name, role, password_hash) VALUES ('x', 'admin', 'plaintext')`), /console_users_password_hash_check/);
    await assert.rejects(t.db.query(sql`INSERT INTO espf.console_users (name, role, password_hash) VALUES ('x', 'root', ${await hashPassword('whatever12345')})`), /console_users_role_check/);
  });

  describe('enabled', () => {
    before(async () => { await enableConsole(t.db); });

    it('sends a page to the login form; a wrong password is refused (401); the cookie is HttpOnly, SameSite=Strict and signed', async () => {
      const r = await fetch(`${base}/console/matrix`, { redirect: 'manual' });
      assert.equal(r.status, 303);
      assert.equal(r.headers.get('location'), '/console/login?next=%2Fconsole%2Fmatrix');
      const bad = await postLogin(base, { user: ADMIN.user, password: 'wrong password' });
      assert.equal(bad.status, 401);
      assert.equal(bad.headers.get('set-cookie'), null);
      assert.match(await bad.text(), /Wrong user name or password/);
      const ok = await postLogin(base, { user: ADMIN.user, password: ADMIN.password, next: '//evil.example/' });
      assert.equal(ok.status, 303);
      assert.equal(ok.headers.get('location'), '/console/', 'an off-site next is ignored');
      const cookie = ok.headers.get('set-cookie')!;
      assert.match(cookie, /^espf_console=[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+; Path=\/console; HttpOnly; SameSite=Strict; Max-Age=43200$/);
      const value = cookie.split(';')[0]!;
      assert.equal((await page(value, '/console/')).status, 200);
      // A cookie whose id or signature was changed is no session.
      const tampered = value.replace(/\.(.)/, (_m, c: string) => `.${c === 'A' ? 'B' : 'A'}`);
      assert.equal((await page(tampered, '/console/')).status, 303);
      const [id] = value.slice('espf_console='.length).split('.');
      const [{ n }] = await t.db.query(sql`SELECT count(*)::int AS n FROM espf.console_sessions WHERE id_sha256 = sha256(convert_to(${id}, 'UTF8'))`);
      assert.equal(n, 1, 'only the SHA-256 of the session id is stored');
    });

    it('refuses a change without the CSRF token, with a wrong one or from another origin, and changes nothing', async () => {
      const cookie = await login(ADMIN);
      const { csrf } = await page(cookie, '/console/matrix');
      assert.ok(csrf.length > 20);
      assert.equal(await subscribed('Account/Blocked'), false);
      for (const [form, headers] of [
        [{ op: 'sub|EventSender|Account/Blocked' }, {}],
        [{ op: 'sub|EventSender|Account/Blocked', _csrf: 'x'.repeat(csrf.length) }, {}],
        [{ op: 'sub|EventSender|Account/Blocked', _csrf: csrf }, { origin: 'http://evil.example' }],
      ] as [Record<string, string>, Record<string, string>][]) {
        const r = await post(cookie, '/console/matrix', form, headers);
        assert.equal(r.status, 403, JSON.stringify(form));
        assert.equal(await subscribed('Account/Blocked'), false);
      }
      const ok = await post(cookie, '/console/matrix', { op: 'sub|EventSender|Account/Blocked', _csrf: csrf }, { origin: base });
      assert.equal(ok.status, 303);
      assert.equal(await subscribed('Account/Blocked'), true);
      const [a] = await t.db.query(sql`SELECT user_name, action, target, before, after FROM espf.console_audit ORDER BY i_audit DESC LIMIT 1`);
      assert.deepEqual(a, { user_name: ADMIN.user, action: 'handler sub', target: 'EventSender Account/Blocked', before: null, after: { handler: 'EventSender', event_type: 'Account/Blocked' } });
      // Without a session a change is refused (401), with no redirect to follow.
      const anon = await post('', '/console/matrix', { op: 'unsub|EventSender|Account/Blocked', _csrf: csrf });
      assert.equal(anon.status, 401);
      assert.equal(await subscribed('Account/Blocked'), true);
    });

    it('a viewer reads every page and cannot change anything (403, rows unchanged)', async () => {
      const cookie = await login(VIEWER);
      for (const p of ['/console/', '/console/matrix', '/console/handlers', '/console/handlers/EventSender', '/console/subscribers', '/console/deliveries?state=FAILED', '/console/audit', '/console/rules']) {
        const r = await page(cookie, p);
        assert.equal(r.status, 200, `${p}: ${r.text.slice(0, 300)}`);
      }
      const { csrf, text } = await page(cookie, '/console/matrix');
      assert.match(text, /You can look, not change/);
      const before = await t.db.query(sql`SELECT * FROM espf.http_handlers`);
      for (const [p, form] of [
        ['/console/matrix', { op: 'type|Account/New|on' }],
        ['/console/handlers/EventSender', { url: 'http://127.0.0.1:1/x' }],
        ['/console/resend', { key: '1|EventSender' }],
        ['/console/handlers/EventSender/test', {}],
      ] as [string, Record<string, string>][]) {
        const r = await post(cookie, p, { ...form, _csrf: csrf });
        assert.equal(r.status, 403, p);
        assert.match(await r.text(), /victor is a viewer/);
      }
      assert.deepEqual(await t.db.query(sql`SELECT * FROM espf.http_handlers`), before);
      const [ty] = await t.db.query(sql`SELECT enabled FROM espf.event_types WHERE name = 'Account/New'`);
      assert.equal(ty.enabled, false);
    });

    it('shows the database refusal at the field it names, and never sends a secret to the browser', async () => {
      await t.db.query(sql`UPDATE espf.http_handlers SET auth_method = 'Signature', signature_auth_key_id = 'kid', signature_auth_key = 'super-secret-signing-key' WHERE handler = 'EventSender'`);
      const cookie = await login(ADMIN);
      const { csrf, text } = await page(cookie, '/console/handlers/EventSender');
      assert.doesNotMatch(text, /super-secret-signing-key/);
      assert.match(text, /placeholder="set \(type to replace\)"/);
      const r = await post(cookie, '/console/handlers/EventSender', { _csrf: csrf, url: 'ftp://x', auth_method: 'Signature', max_wait_time: '600' });
      assert.equal(r.status, 422);
      const html = await r.text();
      assert.match(html, /<div class="err" id="f_url_err" role="alert">espf\.http_handlers\.url: &#39;ftp:\/\/x&#39; is not an http\(s\) URL/);
      assert.match(html, /id="f_url" name="url" aria-describedby="f_url_help f_url_err" aria-invalid="true"/);
      const bad = await post(cookie, '/console/handlers/EventSender', { _csrf: csrf, request_timeout: '0' });
      assert.equal(bad.status, 422);
      assert.match(await bad.text(), /id="f_request_timeout_err" role="alert">espf\.http_handlers\.request_timeout: must be &gt; 0 and at most 86400 seconds, not 0/);
      const nan = await post(cookie, '/console/handlers/EventSender', { _csrf: csrf, token_rate: 'ten' });
      assert.match(await nan.text(), /id="f_token_rate_err" role="alert">espf\.http_handlers\.token_rate: &quot;ten&quot; is not a number/);
      const names = await post(cookie, '/console/handlers/EventSender', { _csrf: csrf, event_names: '{"Nope/Type": "x"}' });
      assert.equal(names.status, 422);
      assert.match(await names.text(), /id="f_event_names_err" role="alert">espf\.http_handlers\.event_names: [^<]*Nope\/Type/);
      const notJson = await post(cookie, '/console/handlers/EventSender', { _csrf: csrf, event_names: '{oops' });
      assert.match(await notJson.text(), /id="f_event_names_err" role="alert">espf\.http_handlers\.event_names: not JSON/);
      const [row] = await t.db.query(sql`SELECT url, request_timeout, signature_auth_key FROM espf.http_handlers WHERE handler = 'EventSender'`);
      assert.deepEqual(row, { url: [], request_timeout: 300, signature_auth_key: 'super-secret-signing-key' });

      const ok = await post(cookie, '/console/handlers/EventSender', { _csrf: csrf, url: 'http://127.0.0.1:9/a\nhttp://127.0.0.1:9/b', signature_auth_key: 'a-new-signing-key', request_timeout: '30' });
      assert.equal(ok.status, 303);
      const [row2] = await t.db.query(sql`SELECT url, request_timeout, signature_auth_key FROM espf.http_handlers WHERE handler = 'EventSender'`);
      assert.deepEqual(row2, { url: ['http://127.0.0.1:9/a', 'http://127.0.0.1:9/b'], request_timeout: 30, signature_auth_key: 'a-new-signing-key' });
      const [a] = await t.db.query(sql`SELECT action, before, after FROM espf.console_audit ORDER BY i_audit DESC LIMIT 1`);
      assert.equal(a.action, 'http handler update');
      assert.equal(a.before.signature_auth_key, '(set)');
      assert.equal(a.after.signature_auth_key, '(set)');
      assert.deepEqual(a.after.url, ['http://127.0.0.1:9/a', 'http://127.0.0.1:9/b']);
      const audit = await page(cookie, '/console/audit');
      assert.doesNotMatch(audit.text, /signing-key/);
    });

    it('shows the refusal of enabling an http handler without a URL on the matrix', async () => {
      await t.db.query(sql`UPDATE espf.http_handlers SET url = '{}' WHERE handler = 'EventSender'`);
      const cookie = await login(ADMIN);
      const { csrf } = await page(cookie, '/console/matrix');
      const r = await post(cookie, '/console/matrix', { _csrf: csrf, op: 'handler|EventSender|on' });
      assert.equal(r.status, 422);
      assert.match(await r.text(), /role="alert">espf\.handlers\.enabled: http handler EventSender cannot be enabled while espf\.http_handlers\.url is empty/);
    });

    it('the overview marks a handler red when the circuit breaker holds one of its URLs down', async () => {
      const cookie = await login(VIEWER);
      const row = async () => /<tr class="([^"]*)">\s*<th scope="row"><a href="\/console\/handlers\/EventSender">[\s\S]*?<\/tr>/.exec((await page(cookie, '/console/')).text)!;
      assert.doesNotMatch((await row())[0], /down/);
      await t.db.query(sql`INSERT INTO espf.target_states (handler, url, instance, up, since, failures) VALUES ('EventSender', 'http://127.0.0.1:9/a', 'main', false, now(), 10)`);
      const r = await row();
      assert.equal(r[1], 'bad');
      assert.match(r[0], /1 URL down \(probed only\)/);
      await t.db.query(sql`DELETE FROM espf.target_states`);
    });

    it('lists the event rules with the result of espf rule check, and shows a rule with its compiled trigger', async () => {
      const cookie = await login(VIEWER);
      const list = await page(cookie, '/console/rules');
      assert.equal(list.status, 200);
      const [{ n }] = await t.db.query(sql`SELECT count(*)::int AS n FROM espf.event_rules`);
      assert.ok(n > 0);
      assert.match(list.text, new RegExp(`espf rule check: all ${n} rules compile`));
      const [rule] = await t.db.query(sql`SELECT name, event_type FROM espf.event_rules WHERE event_type = 'Account/Blocked' ORDER BY name LIMIT 1`);
      const one = await page(cookie, `/console/rules/${encodeURIComponent(rule.name)}`);
      assert.equal(one.status, 200);
      assert.match(one.text, /<pre class="sql">[^<]*CREATE[^<]*TRIGGER/);
      assert.equal((await page(cookie, '/console/rules/No%2FSuch')).status, 404);
    });

    it('logging out ends the session on the server', async () => {
      const cookie = await login(ADMIN);
      const { csrf } = await page(cookie, '/console/');
      const r = await post(cookie, '/console/logout', { _csrf: csrf });
      assert.equal(r.status, 303);
      assert.match(r.headers.get('set-cookie') ?? '', /Max-Age=0/);
      assert.equal((await page(cookie, '/console/')).status, 303, 'the old cookie is no session any more');
    });

    it('served by a role with only espf_sender, the console reads and refuses changes; a member of espf_console WITH INHERIT FALSE changes through the console only (42501 alone)', async () => {
      const role = `espf_console_t_${randomBytes(4).toString('hex')}`;
      await t.db.query(sql`CREATE ROLE ${sql.ident(role)} LOGIN IN ROLE espf_sender`);
      const u = new URL(t.url);
      u.username = role;
      u.password = '';
      const rdb = connect({ connectionString: u.toString(), poolSize: 2 });
      const s = await startConsoleServer(rdb, u.toString());
      try {
        const r = await postLogin(s.base, { user: ADMIN.user, password: ADMIN.password });
        assert.equal(r.status, 303, await r.text());
        const cookie = (r.headers.get('set-cookie') ?? '').split(';')[0]!;
        const get = async (p: string) => {
          const x = await fetch(`${s.base}${p}`, { headers: { cookie }, redirect: 'manual' });
          return { status: x.status, text: await x.text() };
        };
        for (const p of ['/console/', '/console/matrix', '/console/handlers/EventSender', '/console/deliveries', '/console/audit', '/console/rules']) {
          assert.equal((await get(p)).status, 200, p);
        }
        const csrf = /name="_csrf" value="([^"]*)"/.exec((await get('/console/matrix')).text)![1]!;
        const sub = () => fetch(`${s.base}/console/matrix`, {
          method: 'POST', redirect: 'manual', headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ _csrf: csrf, op: 'sub|EventSender|Account/Unblocked' }).toString(),
        });
        const refused = await sub();
        assert.equal(refused.status, 422);
        assert.match(await refused.text(), /role="alert">permission denied to set role &quot;espf_console&quot;/);
        // As docs/security.md says: a member that may SET ROLE espf_console but does not hold its rights.
        await t.db.query(sql`GRANT espf_console TO ${sql.ident(role)} WITH INHERIT FALSE`);
        assert.equal((await sub()).status, 303);
        assert.equal((await t.db.query(sql`SELECT 1 FROM espf.subscriptions WHERE handler = 'EventSender' AND event_type = 'Account/Unblocked'`)).length, 1);
        const [audit] = await t.db.query(sql`SELECT user_name, action, target FROM espf.console_audit ORDER BY i_audit DESC LIMIT 1`);
        assert.deepEqual(audit, { user_name: ADMIN.user, action: 'handler sub', target: 'EventSender Account/Unblocked' });
        // The login role alone, outside the console's transaction, may write no configuration.
        for (const [what, q] of [
          ['INSERT espf.subscriptions', sql`INSERT INTO espf.subscriptions (handler, event_type) VALUES ('EventSender', 'Account/Blocked')`],
          ['UPDATE espf.http_handlers', sql`UPDATE espf.http_handlers SET request_timeout = 7 WHERE handler = 'EventSender'`],
          ['UPDATE espf.handlers', sql`UPDATE espf.handlers SET enabled = false WHERE name = 'EventSender'`],
          ['UPDATE espf.event_types', sql`UPDATE espf.event_types SET enabled = false WHERE name = 'Account/New'`],
        ] as const) {
          await assert.rejects(rdb.query(q), (err: { code?: string }) => err.code === '42501', what);
        }
      } finally {
        await s.server.close();
        await rdb.dispose();
        await t.db.query(sql`DELETE FROM espf.subscriptions WHERE event_type = 'Account/Unblocked'`);
        await t.db.query(sql`DROP OWNED BY ${sql.ident(role)}`);
        await t.db.query(sql`DROP ROLE ${sql.ident(role)}`);
      }
    });

    it('limits failed logins per user name: then even the right password waits (429)', async () => {
      await t.db.query(sql`UPDATE espf.console SET login_attempts = 3`);
      // A server of its own: the failed logins counted so far (per client address and per
      // user name, in the server's memory) are those of this test alone.
      const own = await startConsoleServer(t.db, t.url);
      try {
        const attempt = (password: string) => postLogin(own.base, { user: VIEWER.user, password });
        let refused = 0;
        while (refused < 10 && (await attempt('nope nope nope')).status === 401) refused++;
        assert.equal(refused, 3, `${refused} wrong passwords before 429`);
        const r = await attempt(VIEWER.password);
        assert.equal(r.status, 429);
        assert.ok(Number(r.headers.get('retry-after')) > 0);
        assert.match(await r.text(), /Too many failed logins/);
      } finally {
        await own.server.close();
        await t.db.query(sql`UPDATE espf.console SET login_attempts = DEFAULT`);
      }
    });
  });
});

describe('console: upgrade from the release before it (every migration but 0011 and 0014, sql/ without 800_console.sql)', () => {
  it('keeps events, deliveries and statuses; adds the console switched off, its tables, indexes and views', async () => {
    const s = testServer();
    const name = `espf_u_${randomBytes(5).toString('hex')}`;
    const admin = connect({ connectionString: s.adminUrl, poolSize: 1 });
    await admin.query(sql`CREATE DATABASE ${sql.ident(name)}`);
    const db = connect({ connectionString: withDatabase(s.adminUrl, name), poolSize: 2 });
    const dir = await mkdtemp(path.join(os.tmpdir(), 'espf-upgrade-'));
    try {
      await mkdir(path.join(dir, 'migrations'));
      await mkdir(path.join(dir, 'sql'));
      for (const f of await readdir(MIGRATIONS_DIR)) if (f !== '0011_console.sql' && f !== '0014_console_limits.sql') await copyFile(path.join(MIGRATIONS_DIR, f), path.join(dir, 'migrations', f));
      for (const f of await readdir(REPEATABLE_SQL_DIR)) if (f !== '800_console.sql') await copyFile(path.join(REPEATABLE_SQL_DIR, f), path.join(dir, 'sql', f));
      await migrate(db, { migrations: path.join(dir, 'migrations'), repeatable: path.join(dir, 'sql') });
      assert.equal((await db.query(sql`SELECT to_regclass('espf.console') AS t`))[0].t, null);

      const ids = await seedCustomer(db);
      const [acc] = await addAccounts(db, ids, 1, '+1555800');
      await db.query(sql`INSERT INTO espf.events (i_event, event_type, variables) VALUES
        (1, 'Account/New', ${JSON.stringify({ i_event: 1, i_account: acc })}), (2, 'Account/Blocked', ${JSON.stringify({ i_event: 2, i_account: acc })})`);
      await db.query(sql`INSERT INTO espf.event_deliveries (i_event, handler, state, event_type, order_key, i_account, instance, attempts, last_http_status, last_error, finished_at) VALUES
        (1, 'EventSender', 'DELIVERED', 'Account/New', ${`a:${acc}`}, ${acc}, 'main', 1, 200, NULL, now()),
        (2, 'EventSender', 'FAILED', 'Account/Blocked', ${`a:${acc}`}, ${acc}, 'main', 3, 500, 'HTTP 500', now())`);
      await db.query(sql`INSERT INTO espf.account_provisioning_statuses (i_account, handler, status, i_event, event_type, attempts, message)
                         VALUES (${acc}, 'EventSender', 'FAILED', 2, 'Account/Blocked', 3, 'HTTP 500')`);
      const before = await db.query(sql`SELECT (SELECT json_agg(e ORDER BY i_event) FROM espf.events e) AS e,
        (SELECT json_agg(d ORDER BY i_event) FROM espf.event_deliveries d) AS d, (SELECT json_agg(s) FROM espf.account_provisioning_statuses s) AS s`);

      const r = await migrate(db);
      assert.deepEqual(r.applied, ['0011_console.sql', '0014_console_limits.sql']);
      const after = await db.query(sql`SELECT (SELECT json_agg(e ORDER BY i_event) FROM espf.events e) AS e,
        (SELECT json_agg(d ORDER BY i_event) FROM espf.event_deliveries d) AS d, (SELECT json_agg(s) FROM espf.account_provisioning_statuses s) AS s`);
      assert.deepEqual(after, before);
      const [c] = await db.query(sql`SELECT enabled, length(session_secret) AS secret, trusted_proxies::text AS trusted_proxies, resend_max_rows FROM espf.console`);
      assert.deepEqual(c, { enabled: false, secret: 64, trusted_proxies: '{}', resend_max_rows: 100000 });
      const idx = await db.query(sql`SELECT indexname FROM pg_indexes WHERE schemaname = 'espf' AND indexname IN ('event_deliveries_account_idx', 'event_deliveries_failed_idx') ORDER BY 1`);
      assert.deepEqual(idx.map((i) => i.indexname), ['event_deliveries_account_idx', 'event_deliveries_failed_idx']);
      const [o] = await db.query(sql`SELECT failed_24h, last_error FROM espf.console_overview WHERE handler = 'EventSender'`);
      assert.deepEqual(o, { failed_24h: 1, last_error: 'HTTP 500' });
    } finally {
      await db.dispose();
      await admin.query(sql`DROP DATABASE IF EXISTS ${sql.ident(name)} WITH (FORCE)`);
      await admin.dispose();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
