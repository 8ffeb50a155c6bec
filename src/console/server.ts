import type http from 'node:http';
import type { Db } from '../db/connect.ts';
import { oneLine, sqlState, SQLSTATE } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import { COOKIE, LoginLimiter, readCookie, sameString, SCRYPT_N_DEFAULT, secureCookieFor, unsignSession } from './auth.ts';
import { checkOrigin, readForm, redirect, Refusal, send, serveStatic } from './http.ts';
import { errorPage, login, offPage } from './pages/login.ts';
import { ResendJobs } from './resend-jobs.ts';
import { Cached, SETTINGS_TTL_MS, SettingsCache } from './settings.ts';
import { RULE_CHECK_TTL_MS } from './pages/rules.ts';
import { checkRules } from '../rules/rules.ts';
import { AddressPolicy } from '../security/address-policy.ts';
import { findRoute, ROUTES, type ConsoleDeps } from './routes.ts';
import * as store from './store.ts';

export interface ConsoleOptions {
  readonly db: Db;
  readonly log: Logger;
  /** Where this instance's provisioning.log is (espf run passes ESPF_LOG_DIR; default ./log). */
  readonly logDir?: string;
  /** Session cookies Secure: true always, false only behind https, unset unless the Host is loopback (ESPF_CONSOLE_SECURE_COOKIE). */
  readonly secureCookie?: boolean;
  /** The scrypt cost of the check run for an unknown user name (ESPF_CONSOLE_SCRYPT_N; default SCRYPT_N_DEFAULT). */
  readonly scryptN?: number;
  /** ESPF_CONSOLE_TEST_EVENT_DENY: addresses, networks and names (loopback, private, link-local) no test event goes to. */
  readonly testEventDeny?: readonly string[];
  /** How long espf.console is kept between reads (default SETTINGS_TTL_MS; 0 reads it for every request). */
  readonly settingsTtlMs?: number;
}

/**
 * The web console under /console/ (docs/console.md). Off until espf.console.enabled
 * and a user exist. This file is the way in: settings, login, session and CSRF;
 * the pages are the route table of src/console/routes.ts.
 */
export function createConsole(opts: ConsoleOptions) {
  const { db, log } = opts;
  const limiter = new LoginLimiter();
  const settingsCache = new SettingsCache(db, opts.settingsTtlMs ?? SETTINGS_TTL_MS);
  const deps: ConsoleDeps = {
    db, log, logDir: opts.logDir ?? 'log', jobs: new ResendJobs(db, log), scryptN: opts.scryptN ?? SCRYPT_N_DEFAULT,
    testEventDeny: opts.testEventDeny?.length ? new AddressPolicy(opts.testEventDeny) : null,
    ruleCheck: new Cached(() => checkRules(db), RULE_CHECK_TTL_MS),
    secureCookie: (req) => secureCookieFor(opts.secureCookie, req.headers.host, req.headers['x-forwarded-proto']),
  };

  async function serve(req: http.IncomingMessage, res: http.ServerResponse, p: string, seen: { user?: string }): Promise<void> {
    if (p === '/console') return redirect(res, '/console/');
    if (p.startsWith('/console/static/')) return serveStatic(res, p.slice('/console/static/'.length));
    let settings: store.ConsoleSettings | null;
    try {
      settings = await settingsCache.get();
    } catch (err) {
      if (sqlState(err) === SQLSTATE.undefinedTable) return send(res, 404, offPage('The console is not installed in this database (espf.console is missing): run espf migrate.'));
      throw err;
    }
    if (!settings?.enabled) return send(res, 404, offPage('The console is off: espf.console.enabled is false.'));
    if (settings.users === 0) return send(res, 404, offPage('The console has no users (espf.console_users is empty).'));
    const query = new URL(req.url ?? '/', 'http://x').searchParams;
    if (p === '/console/login') return login({ req, res, query, settings }, deps, limiter);

    const session = await findSession(req, settings);
    seen.user = session?.session.user;
    if (!session) {
      if (req.method === 'GET' || req.method === 'HEAD') {
        const next = p + (query.size ? `?${query}` : '');
        return redirect(res, `/console/login?next=${encodeURIComponent(next)}`);
      }
      throw new Refusal(401, 'refused: not logged in, or the session has expired; log in again');
    }
    const get = req.method === 'GET' || req.method === 'HEAD';
    let form = new URLSearchParams();
    if (!get) {
      if (req.method !== 'POST') throw new Refusal(405, 'use GET or POST');
      checkOrigin(req);
      form = await readForm(req);
      if (!sameString(form.get('_csrf') ?? '', session.session.csrf)) {
        throw new Refusal(403, 'refused: the form is stale or did not come from this console (CSRF token missing or wrong); reload the page');
      }
    }
    const found = findRoute(ROUTES, p, get);
    if (!get && !found?.route.anyRole && session.session.role !== 'admin') {
      throw new Refusal(403, `refused: ${session.session.user} is a viewer; only an admin can change anything`);
    }
    if (!found) throw new Refusal(404, `not found: ${p.slice(0, 100)}`);
    await found.route.handle({
      req, res, path: p, query, settings, session: session.session, sessionId: session.id, get, form,
      params: found.params, ctx: { session: session.session, path: p }, deps,
    });
  }

  async function findSession(req: http.IncomingMessage, settings: store.ConsoleSettings): Promise<{ session: store.Session; id: string } | null> {
    const cookie = readCookie(req.headers.cookie, COOKIE);
    if (!cookie) return null;
    const id = unsignSession(cookie, settings.session_secret);
    if (!id) return null;
    const session = await store.findSession(db, id);
    return session ? { session, id } : null;
  }

  return {
    /** Routes /console/…; returns false when the path is not the console's. */
    handle(req: http.IncomingMessage, res: http.ServerResponse, p: string): boolean {
      if (p !== '/console' && !p.startsWith('/console/')) return false;
      const seen: { user?: string } = {};
      serve(req, res, p, seen).catch(async (err: unknown) => {
        if (res.headersSent) { res.destroy(); return; }
        if (err instanceof Refusal) {
          if (!req.complete) req.resume();
          // A logged-in user's refused change (a viewer, a stale or foreign form) is audited.
          if (err.status === 403 && seen.user) await store.auditRefusal(db, log, seen.user, p, err.status, err.message);
          return send(res, err.status, errorPage({ session: null, path: p }, err.status === 404 ? 'Not found' : 'Refused', err.message));
        }
        log.error({ err: oneLine(err), path: p }, 'console: request failed');
        send(res, 500, errorPage({ session: null, path: p }, 'Error', 'internal error: see the espf run log'));
      });
      return true;
    },
  };
}
