import { html, type Html } from '../html.ts';
import { layout, notice, type PageContext } from '../layout.ts';
import type http from 'node:http';
import { checkOrigin, readForm, redirect, safeNext, send } from '../http.ts';
import {
  clearedCookie, LoginLimiter, newCsrfToken, newSessionId, sessionCookie, signSession, verifyPassword,
} from '../auth.ts';
import * as store from '../store.ts';
import type { ConsoleDeps, Route } from '../routes.ts';

/** The login form, the page shown while the console is off, the error page, and logging out. */

export function loginPage(error: string | null, next: string, user = ''): Html {
  return layout({ session: null, path: '/console/login' }, 'Log in', html`
<form method="post" action="/console/login" class="login">
  ${notice('error', error)}
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

export async function login(r: LoginRequest, deps: ConsoleDeps, limiter: LoginLimiter): Promise<void> {
  const { db, log } = deps;
  const next = safeNext(r.query.get('next'));
  if (r.req.method === 'GET') return send(r.res, 200, loginPage(null, next));
  checkOrigin(r.req);
  const form = await readForm(r.req);
  const user = (form.get('user') ?? '').trim().slice(0, 100);
  const password = form.get('password') ?? '';
  const to = safeNext(form.get('next'));
  const windowMs = r.settings.login_window_s * 1000;
  const keys = [`ip:${r.req.socket.remoteAddress}`, `user:${user.toLowerCase()}`];
  const wait = Math.max(...keys.map((k) => limiter.blockedFor(k, r.settings.login_attempts, windowMs)));
  if (wait > 0) {
    log.warn({ user, remote: r.req.socket.remoteAddress }, 'console: login refused, too many failures');
    return send(r.res, 429, loginPage(`Too many failed logins: try again in ${wait} s.`, to, user), { 'retry-after': String(wait) });
  }
  const found = user ? await store.findUser(db, user) : null;
  const ok = await verifyPassword(password, found?.password_hash ?? null);
  if (!ok || !found) {
    for (const k of keys) limiter.fail(k);
    log.warn({ user, remote: r.req.socket.remoteAddress }, 'console: wrong user name or password');
    return send(r.res, 401, loginPage('Wrong user name or password.', to, user));
  }
  const id = newSessionId();
  await store.createSession(db, id, found.name, newCsrfToken(), r.settings.session_ttl_s);
  log.info({ user: found.name, role: found.role }, 'console: logged in');
  redirect(r.res, to, { 'set-cookie': sessionCookie(signSession(id, r.settings.session_secret), r.settings.session_ttl_s, deps.secureCookie(r.req)) });
}
