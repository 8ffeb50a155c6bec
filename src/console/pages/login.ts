import { html, type Html } from '../html.ts';
import { layout, notice, type PageContext } from '../layout.ts';
import type http from 'node:http';
import { checkOrigin, readForm, redirect, Refusal, safeNext, send } from '../http.ts';
import {
  clearedCookie, clientAddress, LoginLimiter, newCsrfToken, newSessionId, readCookie, sameString, sessionCookie, signSession, unsignSession, verifyPassword,
} from '../auth.ts';
import * as store from '../store.ts';
import type { ConsoleDeps, Route } from '../routes.ts';

/** The login form, the page shown while the console is off, the error page, and logging out. */

export function loginPage(error: string | null, next: string, token: string, user = ''): Html {
  return layout({ session: null, path: '/console/login' }, 'Log in', html`
<form method="post" action="/console/login" class="login">
  ${notice('error', error)}
  <input type="hidden" name="_login" value="${token}">
  <input type="hidden" name="next" value="${next}">
  <label for="user">User</label>
  <input id="user" name="user" autocomplete="username" required value="${user}" autofocus>
  <label for="password">Password</label>
  <input id="password" name="password" type="password" autocomplete="current-password" required>
  <button class="primary" type="submit">Log in</button>
</form>`);
}

export function offPage(reason: string): Html {
  return layout({ session: null, path: '/console/' }, 'The console is off', html`
<p>${reason}</p>
<p>To turn it on (see docs/console.md):</p>
<pre>npx espf console user add alice --role admin     # asks for the password on stdin
psql "$DATABASE_URL" -c "UPDATE espf.console SET enabled = true"</pre>`);
}

export function errorPage(ctx: PageContext, title: string, text: string): Html {
  return layout(ctx, title, html`${notice('error', text)}<p><a href="/console/">Overview</a></p>`);
}

export const logoutRoutes: readonly Route[] = [{
  path: '/console/logout', method: 'POST', anyRole: true,
  async handle(r) {
    await store.deleteSession(r.deps.db, r.sessionId);
    await store.audit(r.deps.db, r.session.user, 'logout', null, null, null);
    redirect(r.res, '/console/login', { 'set-cookie': clearedCookie(r.deps.secureCookie(r.req)) });
  },
}];

/** A request to /console/login (no session yet). */
export interface LoginRequest {
  readonly req: http.IncomingMessage;
  readonly res: http.ServerResponse;
  readonly query: URLSearchParams;
  readonly settings: store.ConsoleSettings;
}

/**
 * Password checks running at once, at most: scrypt runs on the thread pool (4
 * threads) that the sender's DNS lookups and file reads use too, and takes 128 MiB
 * each at the default cost; two leave the pool half free.
 */
export const MAX_LOGINS_IN_FLIGHT = 2;
/** An address may fail this many times more than one (address, user) pair, over all user names. */
const ADDRESS_FACTOR = 5;
let loginsInFlight = 0;

/** The login form's token: a cookie of its own (signed with espf.console.session_secret), and the same value in the form. */
export const LOGIN_COOKIE = 'espf_console_login';
const LOGIN_TOKEN_S = 3600;

function loginCookie(value: string, secure: boolean): string {
  return `${LOGIN_COOKIE}=${value}; Path=/console/login; HttpOnly; SameSite=Strict; Max-Age=${LOGIN_TOKEN_S}${secure ? '; Secure' : ''}`;
}

/**
 * A login must come from the console's own form, as every change must: an
 * `Origin` header naming this console (browsers send it with every form POST),
 * and the token of the form equal to its cookie. A page elsewhere can neither
 * read the token nor send the cookie (SameSite=Strict), so it cannot log a
 * browser in to an account of its choosing (login CSRF).
 */
function checkLoginForm(req: http.IncomingMessage, form: URLSearchParams, secret: string): void {
  if (req.headers.origin === undefined) throw new Refusal(403, 'refused: a login must come from the console\'s login page (no Origin header); reload the page');
  checkOrigin(req);
  const cookie = readCookie(req.headers.cookie, LOGIN_COOKIE) ?? '';
  if (!unsignSession(cookie, secret) || !sameString(form.get('_login') ?? '', cookie)) {
    throw new Refusal(403, 'refused: the login form is stale or did not come from this console (its token is missing or wrong); reload the page');
  }
}

export async function login(r: LoginRequest, deps: ConsoleDeps, limiter: LoginLimiter): Promise<void> {
  const { db, log } = deps;
  const next = safeNext(r.query.get('next'));
  if (r.req.method === 'GET') {
    const token = signSession(newSessionId(), r.settings.session_secret);
    return send(r.res, 200, loginPage(null, next, token), { 'set-cookie': loginCookie(token, deps.secureCookie(r.req)) });
  }
  const form = await readForm(r.req);
  checkLoginForm(r.req, form, r.settings.session_secret);
  const token = form.get('_login')!;
  const user = (form.get('user') ?? '').trim().slice(0, 100);
  const password = form.get('password') ?? '';
  const to = safeNext(form.get('next'));
  const windowMs = r.settings.login_window_s * 1000;
  const remote = clientAddress(r.req.socket.remoteAddress, r.req.headers['x-forwarded-for'], r.settings.trusted_proxies);
  // Limited per (address, user): a guesser elsewhere never locks the user out; and per address over every user name.
  const limits: [string, number][] = [[`pair:${remote}|${user.toLowerCase()}`, r.settings.login_attempts], [`ip:${remote}`, r.settings.login_attempts * ADDRESS_FACTOR]];
  // Checked and counted with no await in between: concurrent guesses are all counted.
  const wait = Math.max(...limits.map(([k, n]) => limiter.blockedFor(k, n, windowMs)));
  const tooMany = (s: number) => {
    log.warn({ user, remote }, 'console: login refused, too many failures');
    send(r.res, 429, loginPage(`Too many failed logins: try again in ${s} s.`, to, token, user), { 'retry-after': String(s) });
  };
  if (wait > 0) return tooMany(wait);
  if (!limits.every(([k, n]) => limiter.begin(k, n, windowMs))) return tooMany(Math.ceil(windowMs / 1000));
  // Counted, then refused while MAX_LOGINS_IN_FLIGHT password checks run: a flood cannot fill the thread pool.
  if (loginsInFlight >= MAX_LOGINS_IN_FLIGHT) return tooMany(1);
  loginsInFlight++;
  let found: Awaited<ReturnType<typeof store.findUser>> = null;
  let ok = false;
  try {
    found = user ? await store.findUser(db, user) : null;
    ok = await verifyPassword(password, found?.password_hash ?? null, deps.scryptN);
  } finally {
    loginsInFlight--;
  }
  if (!ok || !found) {
    for (const [k] of limits) limiter.failed(k);
    log.warn({ user, remote }, 'console: wrong user name or password');
    await store.audit(db, user.slice(0, 63) || '(none)', 'login failed', remote, null, null);
    return send(r.res, 401, loginPage('Wrong user name or password.', to, token, user));
  }
  limiter.succeeded(limits[0]![0], true);
  limiter.succeeded(limits[1]![0], false);
  const id = newSessionId();
  await store.createSession(db, id, found.name, newCsrfToken(), r.settings.session_ttl_s);
  await store.audit(db, found.name, 'login', remote, null, { role: found.role });
  log.info({ user: found.name, role: found.role }, 'console: logged in');
  redirect(r.res, to, { 'set-cookie': sessionCookie(signSession(id, r.settings.session_secret), r.settings.session_ttl_s, deps.secureCookie(r.req)) });
}
