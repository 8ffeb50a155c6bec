import assert from 'node:assert/strict';
import http from 'node:http';
import { sql } from '@databases/pg';
import { ADMIN, consoleHttp, consoleOnNewDatabase, holdLock, postLogin, VIEWER } from './support/console.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { eventually } from './support/receiver.ts';
import { connect } from '../src/db/connect.ts';
import { migrate } from '../src/migrate/migrate.ts';
import { previousRelease } from './support/upgrade.ts';
import { readCaFile } from '../src/security/ca-file.ts';
import { hashPassword, SCRYPT_N_MIN, verifyPassword } from '../src/console/auth.ts';
import { readEnv } from '../src/config/env.ts';
import pino from 'pino';
import { startHttpServer } from '../src/run/http-server.ts';
import { Sender } from '../src/run/sender.ts';
import { provisioningLog } from '../src/log/logger.ts';
import { TestReceiver } from './support/receiver.ts';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * The smaller holes of the console (docs/console.md "Security"), over real HTTP
 * against a real database: notices that echo no text from the URL, paths and
 * `next` values that answer 400/404 instead of 500, bounded key lists, URL
 * passwords hidden, refusals audited, and the session rules.
 */
describe('console: smaller holes', function () {
  this.timeout(60_000);
  let t: TestDatabase;
  let base: string;
  let close: () => Promise<void>;

  before(async () => {
    ({ t, base, close } = await consoleOnNewDatabase());
  });
  after(async () => {
    await close?.();
    await t?.drop();
  });
  const { form, login, get } = consoleHttp(() => base);

  describe('notices take no text from the URL', () => {
    it('?done= shows only fixed messages, with names the database knows; ?refused= shows nothing', async () => {
      const { cookie } = await login(VIEWER);
      const lure = 'Your session expired, call +1 555 0100 to reactivate';
      for (const p of [
        `/console/matrix?done=${encodeURIComponent(`type|${lure}|on`)}`,
        `/console/matrix?done=${encodeURIComponent(`sub|EventSender|${lure}`)}`,
        `/console/matrix?done=${encodeURIComponent(`handler|EventSender|${lure}`)}`,
        `/console/deliveries?done=resend&n=${encodeURIComponent(lure)}`,
        `/console/subscribers/1?refused=${encodeURIComponent(lure)}`,
        `/console/handlers/EventSender?done=${encodeURIComponent(lure)}`,
      ]) {
        const r = await get(cookie, p);
        assert.equal(r.status, 200, p);
        assert.doesNotMatch(r.text, /call \+1 555/, p);
        assert.doesNotMatch(r.text, /class="notice/, p);
      }
      // The real notices still show.
      assert.match((await get(cookie, `/console/matrix?done=${encodeURIComponent('sub|EventSender|Account/New')}`)).text, /role="status">EventSender subscribed to Account\/New\./);
      assert.match((await get(cookie, '/console/deliveries?done=resend&n=3')).text, /role="status">3 deliveries re-queued/);
    });
  });

  describe('odd paths and next values: 404 or a safe redirect, never 500', () => {
    it('/console/static/__proto__ and other names that are not files: 404', async () => {
      for (const p of ['/console/static/__proto__', '/console/static/constructor', '/console/static/%ZZ', '/console/static/..%2fserver.ts', '/console/static/']) {
        const r = await fetch(`${base}${p}`);
        assert.equal(r.status, 404, p);
      }
    });

    it('a malformed %-escape in a handler or rule name: 404', async () => {
      const { cookie } = await login(VIEWER);
      for (const p of ['/console/handlers/%E0%A4%A', '/console/handlers/%ZZ', '/console/rules/%', '/console/rules/abc%E0']) {
        const r = await get(cookie, p);
        assert.equal(r.status, 404, `${p}: ${r.text.slice(0, 200)}`);
        assert.match(r.text, /malformed %-escape/);
      }
    });

    it('a non-Latin-1 (or otherwise odd) next: the login goes to the overview', async () => {
      for (const next of ['/console/ü', '/console/\u{1F600}', '/console/\ud800', '/console/a b', '/console/\\evil']) {
        const r = await postLogin(base, { user: ADMIN.user, password: ADMIN.password, next });
        assert.equal(r.status, 303, JSON.stringify(next));
        assert.equal(r.headers.get('location'), '/console/');
        const page = await fetch(`${base}/console/login?${new URLSearchParams({ next })}`);
        assert.equal(page.status, 200);
      }
      const ok = await postLogin(base, { user: ADMIN.user, password: ADMIN.password, next: '/console/deliveries?state=FAILED' });
      assert.equal(ok.headers.get('location'), '/console/deliveries?state=FAILED');
    });
  });

  it('"Resend selected" with more than 1,000 keys is refused with the reason, and nothing is re-queued', async () => {
    const { cookie, csrf } = await login(ADMIN);
    const body = new URLSearchParams({ _csrf: csrf });
    for (let i = 1; i <= 1001; i++) body.append('key', `${i}|EventSender`);
    for (const p of ['/console/deliveries/resend', '/console/resend']) {
      const r = await form(p, body, { cookie });
      assert.equal(r.status, 413, p);
      assert.match(await r.text(), /1001 deliveries selected; one resend takes at most 1000 \(nothing was re-queued\)/);
    }
    const [a] = await t.db.query(sql`SELECT count(*)::int AS n FROM espf.console_audit WHERE action = 'resend'`);
    assert.equal(a.n, 0);
  });

  it('a user:password@ in a handler URL: shown as *** to everyone, kept on save, refused when *** is sent for another URL, never in the audit', async () => {
    const secretUrl = 'http://hss:s3cret-pw@127.0.0.1:1/events';
    await t.db.query(sql`UPDATE espf.http_handlers SET url = ${[secretUrl]}::text[] WHERE handler = 'EventSender'`);
    const stored = async () => (await t.db.query(sql`SELECT url FROM espf.http_handlers WHERE handler = 'EventSender'`))[0].url;
    const viewer = await login(VIEWER);
    const seen = await get(viewer.cookie, '/console/handlers/EventSender');
    assert.doesNotMatch(seen.text, /s3cret-pw/);
    assert.match(seen.text, /http:\/\/hss:\*\*\*@127\.0\.0\.1:1\/events/);
    const { cookie, csrf } = await login(ADMIN);
    // The form as shown (the URL masked) saves another column and keeps the password.
    assert.equal((await form('/console/handlers/EventSender', { _csrf: csrf, url: 'http://hss:***@127.0.0.1:1/events', request_timeout: '31' }, { cookie })).status, 303);
    assert.deepEqual(await stored(), [secretUrl]);
    // *** for a URL it was not shown for is refused at the field.
    const moved = await form('/console/handlers/EventSender', { _csrf: csrf, url: 'http://hss:***@127.0.0.1:2/events' }, { cookie });
    assert.equal(moved.status, 422);
    const text = await moved.text();
    assert.match(text, /id="f_url_err" role="alert">espf\.http_handlers\.url: http:\/\/hss:\*\*\*@127\.0\.0\.1:2\/events has its password shown as \*\*\*: type the password again/);
    assert.doesNotMatch(text, /s3cret-pw/);
    assert.deepEqual(await stored(), [secretUrl]);
    // A test event's answers show the URL masked.
    const test = await form('/console/handlers/EventSender/test', { _csrf: csrf }, { cookie });
    assert.equal(test.status, 200);
    assert.doesNotMatch(await test.text(), /s3cret-pw/);
    // A new password typed for a new URL is saved; the audit never holds either password.
    assert.equal((await form('/console/handlers/EventSender', { _csrf: csrf, url: 'http://hss:n3w-pw@127.0.0.1:2/events' }, { cookie })).status, 303);
    assert.deepEqual(await stored(), ['http://hss:n3w-pw@127.0.0.1:2/events']);
    const audit = JSON.stringify(await t.db.query(sql`SELECT * FROM espf.console_audit`));
    assert.match(audit, /hss:\*\*\*@127\.0\.0\.1:2/);
    assert.doesNotMatch(audit, /s3cret-pw|n3w-pw/);
  });

  it('refusals of a logged-in user are audited: a viewer\'s change, a missing CSRF token, a foreign Origin, a database refusal; logouts too', async () => {
    const refusals = async () => t.db.query(sql`SELECT user_name, target, after FROM espf.console_audit WHERE action = 'refused' ORDER BY i_audit`);
    const before = (await refusals()).length;
    const viewer = await login(VIEWER);
    assert.equal((await form('/console/matrix', { _csrf: viewer.csrf, op: 'type|Account/New|on' }, { cookie: viewer.cookie })).status, 403);
    const admin = await login(ADMIN);
    assert.equal((await form('/console/matrix', { op: 'type|Account/New|on' }, { cookie: admin.cookie })).status, 403);
    assert.equal((await form('/console/matrix', { _csrf: admin.csrf, op: 'type|Account/New|on' }, { cookie: admin.cookie, origin: 'http://evil.example' })).status, 403);
    assert.equal((await form('/console/handlers/EventSender', { _csrf: admin.csrf, request_timeout: '0' }, { cookie: admin.cookie })).status, 422);
    // Anonymous requests are not audited (a flood would fill the table).
    assert.equal((await form('/console/matrix', { op: 'type|Account/New|on' })).status, 401);
    const rows = (await refusals()).slice(before);
    assert.deepEqual(rows.map((r) => [r.user_name, r.target, r.after.status]), [
      [VIEWER.user, '/console/matrix', 403],
      [ADMIN.user, '/console/matrix', 403],
      [ADMIN.user, '/console/matrix', 403],
      [ADMIN.user, '/console/handlers/EventSender', 422],
    ]);
    assert.match(rows[0].after.reason, /victor is a viewer/);
    assert.match(rows[1].after.reason, /CSRF token missing or wrong/);
    assert.match(rows[2].after.reason, /Origin is another site/);
    assert.match(rows[3].after.reason, /^espf\.http_handlers\.request_timeout: must be > 0/);
    assert.equal((await form('/console/logout', { _csrf: viewer.csrf }, { cookie: viewer.cookie })).status, 303);
    const [out] = await t.db.query(sql`SELECT user_name FROM espf.console_audit WHERE action = 'logout' ORDER BY i_audit DESC LIMIT 1`);
    assert.equal(out.user_name, VIEWER.user);
  });

  describe('sessions', () => {
    /** A login with the given Host header; its Set-Cookie. */
    async function loginAt(host: string): Promise<string> {
      const page = await fetch(`${base}/console/login`);
      const token = /name="_login" value="([^"]*)"/.exec(await page.text())![1]!;
      const body = new URLSearchParams({ _login: token, user: VIEWER.user, password: VIEWER.password }).toString();
      const u = new URL(base);
      return new Promise((resolve, reject) => {
        const req = http.request({ host: u.hostname, port: u.port, method: 'POST', path: '/console/login', agent: false,
          headers: { host, origin: `http://${host}`, cookie: (page.headers.get('set-cookie') ?? '').split(';')[0]!,
            'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) } }, (res) => {
          res.resume();
          assert.equal(res.statusCode, 303);
          resolve(String(res.headers['set-cookie'] ?? ''));
        });
        req.on('error', reject);
        req.end(body);
      });
    }

    it('the cookie is Secure unless the Host is loopback', async () => {
      for (const host of ['console.example.net', 'console.example.net:9187', '10.0.0.5:9187', '[2001:db8::1]:9187']) {
        assert.match(await loginAt(host), /; Secure$/, host);
      }
      for (const host of ['localhost:9187', '127.0.0.1', '127.1.2.3:9187', '[::1]:9187', 'espf.localhost']) {
        assert.doesNotMatch(await loginAt(host), /Secure/, host);
      }
    });

    it('a login ends the user\'s earlier session', async () => {
      const first = await login(ADMIN);
      assert.equal((await get(first.cookie, '/console/')).status, 200);
      const second = await login(ADMIN);
      assert.equal((await get(first.cookie, '/console/')).status, 303, 'the first session ended');
      assert.equal((await get(second.cookie, '/console/')).status, 200);
    });

    it('a session ends after 30 minutes without a request; each request starts the 30 minutes again, never past session_ttl', async () => {
      const { cookie } = await login(VIEWER);
      const row = async () => (await t.db.query(sql`
        SELECT extract(epoch FROM expires_at - now())::float8 AS left_s, extract(epoch FROM expires_at - created_at)::float8 AS since_created_s
          FROM espf.console_sessions WHERE user_name = ${VIEWER.user}`))[0];
      const near = (v: number, want: number) => assert.ok(Math.abs(v - want) < 60, `${v} s, not about ${want} s`);
      near((await row()).left_s, 1800);
      await t.db.query(sql`UPDATE espf.console_sessions SET expires_at = now() + interval '1 minute' WHERE user_name = ${VIEWER.user}`);
      assert.equal((await get(cookie, '/console/audit')).status, 200);
      near((await row()).left_s, 1800);
      // Near the end of session_ttl (12 hours), a request does not extend it past.
      await t.db.query(sql`UPDATE espf.console_sessions SET created_at = now() - interval '11 hours 50 minutes' WHERE user_name = ${VIEWER.user}`);
      assert.equal((await get(cookie, '/console/audit')).status, 200);
      near((await row()).since_created_s, 12 * 3600);
      near((await row()).left_s, 600);
      // Idle past its end: the session is gone.
      await t.db.query(sql`UPDATE espf.console_sessions SET expires_at = now() - interval '1 second' WHERE user_name = ${VIEWER.user}`);
      const r = await get(cookie, '/console/audit');
      assert.equal(r.status, 303);
    });
  });

  describe('password hashes', () => {
    it('new hashes cost N=2^17 and carry it; older, cheaper hashes still verify; a row cannot ask for more than 2^20', async () => {
      const strong = await hashPassword('a long passphrase');
      assert.match(strong, /^scrypt\$131072\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
      assert.equal(await verifyPassword('a long passphrase', strong), true);
      assert.equal(await verifyPassword('a long passphrasE', strong), false);
      const old = await hashPassword('an old passphrase', SCRYPT_N_MIN);
      assert.match(old, /^scrypt\$16384\$/);
      assert.equal(await verifyPassword('an old passphrase', old), true);
      const [, , , , salt, key] = old.split('$');
      for (const params of ['2097152$8$1', '1000$8$1', '16384$64$1', '16384$8$16']) {
        assert.equal(await verifyPassword('an old passphrase', `scrypt$${params}$${salt}$${key}`), false, params);
      }
      // The database takes the hash as it is (migrations/0011_console.sql checks its shape only).
      await t.db.query(sql`INSERT INTO espf.console_users (name, role, password_hash) VALUES ('strong', 'viewer', ${strong})`);
      assert.equal((await postLogin(base, { user: 'strong', password: 'a long passphrase' })).status, 303);
      await t.db.query(sql`DELETE FROM espf.console_users WHERE name = 'strong'`);
    });

    it('ESPF_CONSOLE_SCRYPT_N sets the cost: a power of two from 2^14 to 2^20, else refused in one line', () => {
      assert.equal(readEnv({}).consoleScryptN, 131072);
      assert.equal(readEnv({ ESPF_CONSOLE_SCRYPT_N: '16384' }).consoleScryptN, 16384);
      for (const v of ['12345', '8192', '2097152', 'x']) {
        assert.throws(() => readEnv({ ESPF_CONSOLE_SCRYPT_N: v }), { code: 'ESPF_ENV', message: `ESPF_CONSOLE_SCRYPT_N=${v} is not a power of two from 16384 to 1048576` });
      }
    });
  });

  it('a login needs the login form\'s token (its field equal to its cookie) and this console\'s Origin: else 403, and nobody is logged in', async () => {
    const page = await fetch(`${base}/console/login`);
    const setCookie = page.headers.get('set-cookie') ?? '';
    assert.match(setCookie, /^espf_console_login=[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+; Path=\/console\/login; HttpOnly; SameSite=Strict; Max-Age=3600$/);
    const cookie = setCookie.split(';')[0]!;
    const token = cookie.slice('espf_console_login='.length);
    assert.match(await page.text(), new RegExp(`name="_login" value="${token}"`));
    const right = { user: ADMIN.user, password: ADMIN.password };
    for (const [fields, headers, why] of [
      [{ _login: token, ...right }, { cookie }, /no Origin header/],
      [{ _login: token, ...right }, { cookie, origin: 'http://evil.example' }, /Origin is another site/],
      [right, { cookie, origin: base }, /its token is missing or wrong/],
      [{ _login: token, ...right }, { origin: base }, /its token is missing or wrong/],
      [{ _login: `${token}x`, ...right }, { cookie, origin: base }, /its token is missing or wrong/],
      [{ _login: 'forged.token', ...right }, { cookie: 'espf_console_login=forged.token', origin: base }, /its token is missing or wrong/],
    ] as [Record<string, string>, Record<string, string>, RegExp][]) {
      const r = await form('/console/login', fields, headers);
      assert.equal(r.status, 403, JSON.stringify([fields, headers]));
      assert.equal(r.headers.get('set-cookie'), null);
      assert.match(await r.text(), why);
    }
    const ok = await form('/console/login', { _login: token, ...right }, { cookie, origin: base });
    assert.equal(ok.status, 303);
    assert.match(ok.headers.get('set-cookie') ?? '', /^espf_console=/);
  });

  describe('"Send a test event" and internal addresses', () => {
    let rx: TestReceiver;
    before(async () => { rx = await new TestReceiver().listen(); });
    after(async () => { await rx?.close(); });

    async function testEvent(at: string, urls: string[]): Promise<string> {
      await t.db.query(sql`UPDATE espf.http_handlers SET url = ${urls}::text[], auth_method = 'None' WHERE handler = 'EventSender'`);
      const r = await postLogin(at, { user: ADMIN.user, password: ADMIN.password });
      const cookie = (r.headers.get('set-cookie') ?? '').split(';')[0]!;
      const page = await (await fetch(`${at}/console/handlers/EventSender`, { headers: { cookie } })).text();
      const csrf = /name="_csrf" value="([^"]*)"/.exec(page)![1]!;
      const answer = await fetch(`${at}/console/handlers/EventSender/test`, {
        method: 'POST', headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ _csrf: csrf }).toString(),
      });
      assert.equal(answer.status, 200);
      return answer.text();
    }

    it('an answer from a loopback, private or link-local address shows its status only, not its text', async () => {
      rx.respond = () => ({ status: 500, body: 'internal-service-text: db password is hunter2' });
      try {
        const page = await testEvent(base, [rx.url]);
        assert.match(page, /<td>HTTP 500<\/td>/);
        assert.doesNotMatch(page, /internal-service-text|hunter2/);
      } finally {
        rx.respond = () => ({ status: 200 });
      }
      const [a] = await t.db.query(sql`SELECT after FROM espf.console_audit WHERE action = 'test event' ORDER BY i_audit DESC LIMIT 1`);
      assert.deepEqual(a.after.answers.map((x: { answer: string }) => x.answer), ['HTTP 500']);
    });

    it('with ESPF_CONSOLE_TEST_EVENT_DENY=loopback, a test event to 127.0.0.1 or to a name that resolves to it is refused, and nothing is sent', async () => {
      const env = readEnv({ ESPF_CONSOLE_TEST_EVENT_DENY: 'loopback, 10.0.0.0/8' });
      assert.deepEqual(env.consoleTestEventDeny, ['loopback', '10.0.0.0/8']);
      const log = pino({ level: 'silent' });
      const sender = new Sender({ db: t.db, url: t.url, instance: 'main', log, plog: provisioningLog(mkdtempSync(path.join(os.tmpdir(), 'espf-log-'))) });
      const server = await startHttpServer({ sender, db: t.db, log, port: 0, host: '127.0.0.1', consoleSettingsTtlMs: 0, consoleScryptN: SCRYPT_N_MIN, consoleTestEventDeny: env.consoleTestEventDeny });
      try {
        const at = `http://127.0.0.1:${server.port}`;
        const sent = rx.arrived.length;
        const byAddress = await testEvent(at, [rx.url]);
        assert.match(byAddress, /127\.0\.0\.1 is an address ESPF_CONSOLE_TEST_EVENT_DENY refuses: no test event was sent/);
        const byName = await testEvent(at, [rx.url.replace('127.0.0.1', 'localhost')]);
        assert.match(byName, /localhost \((127\.0\.0\.1|::1)\) is an address ESPF_CONSOLE_TEST_EVENT_DENY refuses/);
        assert.equal(rx.arrived.length, sent, 'nothing reached the receiver');
      } finally {
        await server.close();
      }
    });

    it('ESPF_CONSOLE_TEST_EVENT_DENY refuses an entry that is not an address, a network or a known name', () => {
      for (const v of ['loopbak', '10.0.0.0/33', 'example.com', '::1/129']) {
        assert.throws(() => readEnv({ ESPF_CONSOLE_TEST_EVENT_DENY: `private,${v}` }), (err: Error & { code?: string }) => {
          assert.equal(err.code, 'ESPF_ENV');
          assert.match(err.message, /^ESPF_CONSOLE_TEST_EVENT_DENY=.* has ".*", which is not an address, a network \(CIDR\), loopback, private or link-local$/);
          return true;
        });
      }
    });
  });

  describe('ca_file', () => {
    let rx: TestReceiver;
    let dir: string;
    before(async () => {
      rx = await new TestReceiver().listen();
      dir = mkdtempSync(path.join(os.tmpdir(), 'espf-ca-'));
    });
    after(async () => { await rx?.close(); });

    /** The answers of "Send a test event" with this ca_file (set in the row directly). */
    async function testWith(caFile: string): Promise<string> {
      await t.db.query(sql`UPDATE espf.http_handlers SET url = ${[rx.url]}::text[], auth_method = 'None', ca_file = ${caFile} WHERE handler = 'EventSender'`);
      const { cookie, csrf } = await login(ADMIN);
      const r = await form('/console/handlers/EventSender/test', { _csrf: csrf }, { cookie });
      assert.equal(r.status, 200);
      const answers = /<h2>Test answers<\/h2>([\s\S]*?)<\/table>/.exec(await r.text())?.[1] ?? '';
      return answers.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ');
    }

    it('the database takes only an absolute path to a file', async () => {
      for (const v of ['certs/ca.pem', '', '/etc/espf/../passwd', '/etc/./ca.pem', '/etc/espf/', '/etc//ca.pem', '/etc/ca\n.pem']) {
        await assert.rejects(t.db.query(sql`UPDATE espf.http_handlers SET ca_file = ${v} WHERE handler = 'EventSender'`), (err: Error & { code?: string }) => {
          assert.equal(err.code, '23514', v);
          assert.match(err.message, /^espf\.http_handlers\.ca_file: .* is not an absolute path to a file/);
          return true;
        });
      }
      await t.db.query(sql`UPDATE espf.http_handlers SET ca_file = NULL WHERE handler = 'EventSender'`);
    });

    it('a device, a FIFO, a folder or a file over 1 MiB is refused without reading it (nothing is sent); a small regular file is read', async () => {
      const sent = rx.arrived.length;
      assert.match(await testWith('/dev/zero'), /ca_file \/dev\/zero is not a regular file \(a device or socket\)/);
      const fifo = path.join(dir, 'fifo.pem');
      execFileSync('mkfifo', [fifo]);
      assert.match(await testWith(fifo), /is not a regular file \(a FIFO\)/);
      assert.match(await testWith(dir), /is not a regular file \(a folder\)/);
      const big = path.join(dir, 'big.pem');
      writeFileSync(big, Buffer.alloc(2 * 1024 * 1024, 'A'));
      assert.match(await testWith(big), /is 2097152 bytes; at most 1048576/);
      assert.match(await testWith(path.join(dir, 'missing.pem')), /ca_file \S+missing\.pem cannot be read \(ENOENT\)/);
      assert.equal(rx.arrived.length, sent, 'nothing was sent');
      const small = path.join(dir, 'small.pem');
      writeFileSync(small, '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n');
      assert.match(await testWith(small), /HTTP 200/);
    });

    it('with ESPF_CA_DIR, only files inside it (after symbolic links) are read', async () => {
      const inside = path.join(dir, 'ca');
      mkdirSync(inside);
      writeFileSync(path.join(inside, 'ok.pem'), 'pem');
      writeFileSync(path.join(dir, 'outside.pem'), 'pem');
      symlinkSync(path.join(dir, 'outside.pem'), path.join(inside, 'link.pem'));
      const saved = process.env.ESPF_CA_DIR;
      process.env.ESPF_CA_DIR = inside;
      try {
        assert.match(await testWith(path.join(dir, 'outside.pem')), new RegExp(`is not inside ESPF_CA_DIR=${inside.replace(/[.]/g, '\\.')}`));
        assert.match(await testWith(path.join(inside, 'link.pem')), /is not inside ESPF_CA_DIR=/);
        assert.match(await testWith(path.join(inside, 'ok.pem')), /HTTP 200/);
      } finally {
        if (saved === undefined) delete process.env.ESPF_CA_DIR; else process.env.ESPF_CA_DIR = saved;
        await t.db.query(sql`UPDATE espf.http_handlers SET ca_file = NULL WHERE handler = 'EventSender'`);
      }
    });
  });

  it('upgrade from the release before sql/023_ca_file_check.sql: events, deliveries and a relative ca_file are kept; a new relative one is refused', async function () {
    const prev = await previousRelease('0018_console_hardening.sql', ['023_ca_file_check.sql']);
    if (!prev) this.skip(); // not a git checkout
    const e = await createTestDatabase({ empty: true });
    const db = connect({ connectionString: e.url, poolSize: 2 });
    try {
      await migrate(db, prev!);
      await db.query(sql`UPDATE espf.http_handlers SET url = '{http://127.0.0.1:9/x}', ca_file = 'certs/ca.pem' WHERE handler = 'EventSender'`);
      await db.query(sql`INSERT INTO espf.events (i_event, event_type, variables)
                         SELECT g, 'Account/Blocked', jsonb_build_object('i_event', g, 'i_account', g) FROM generate_series(1, 20) g`);
      await db.query(sql`INSERT INTO espf.event_deliveries (i_event, handler, state, event_type, order_key, i_account, instance, commit_lsn, attempts)
                         SELECT g, 'EventSender', CASE WHEN g <= 10 THEN 'DELIVERED' ELSE 'FAILED' END, 'Account/Blocked', 'a:' || g, g, 'main',
                                ('0/' || to_hex(1000 + g))::pg_lsn, 1 FROM generate_series(1, 20) g`);
      const before = await db.query(sql`SELECT to_jsonb(d) AS d FROM espf.event_deliveries d ORDER BY i_event`);
      await migrate(db);
      assert.deepEqual(await db.query(sql`SELECT to_jsonb(d) AS d FROM espf.event_deliveries d ORDER BY i_event`), before);
      // The old row keeps its value, and its other columns can still be saved; espf run does not read it.
      await db.query(sql`UPDATE espf.http_handlers SET request_timeout = 30 WHERE handler = 'EventSender'`);
      const [h] = await db.query(sql`SELECT ca_file, request_timeout FROM espf.http_handlers WHERE handler = 'EventSender'`);
      assert.deepEqual(h, { ca_file: 'certs/ca.pem', request_timeout: 30 });
      await assert.rejects(readCaFile(h.ca_file, undefined), { code: 'ESPF_CA_FILE', message: 'ca_file certs/ca.pem is not an absolute path' });
      await assert.rejects(db.query(sql`UPDATE espf.http_handlers SET ca_file = 'other/ca.pem' WHERE handler = 'EventSender'`), { code: '23514' });
      assert.deepEqual((await migrate(db)).applied, [], 'a second migrate applies nothing');
    } finally {
      await db.dispose();
      await e.drop();
    }
  });

  it('the rules page runs espf rule check (DDL on temporary views) once for concurrent views, then keeps its result for a minute', async () => {
    const { cookie } = await login(VIEWER);
    // A rule's check reads its table: while billing.account is locked, a check waits.
    const lock = await holdLock(t.db, 'billing.account');
    const views = Promise.all(Array.from({ length: 10 }, () => get(cookie, '/console/rules')));
    const checks = () => t.db.query(sql`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
                                          AND state = 'active' AND query LIKE '%espf.check_rules()%'`);
    try {
      await eventually(async () => (await checks()).length > 0, 15_000, 'the check to wait on the lock');
      assert.equal((await checks()).length, 1, 'one check for 10 views');
    } finally {
      await lock.release();
    }
    for (const v of await views) {
      assert.equal(v.status, 200);
      assert.match(v.text, /espf rule check: all \d+ rules compile\. \(checked at \d\d:\d\d:\d\d UTC; at most once every 60 s\)/);
    }
    // Within the minute, a view runs no check: it answers even while the table is locked.
    await t.db.tx(async (tx) => {
      await tx.query(sql`LOCK TABLE billing.account IN ACCESS EXCLUSIVE MODE`);
      const again = await get(cookie, '/console/rules');
      assert.equal(again.status, 200);
    });
  });
});
