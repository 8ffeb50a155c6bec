import { randomBytes } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import type http from 'node:http';
import path from 'node:path';
import { readMatrix } from '../config/handlers.ts';
import type { Db } from '../db/connect.ts';
import { oneLine, sqlState, SQLSTATE } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import {
  clearedCookie, COOKIE, LoginLimiter, newCsrfToken, newSessionId, readCookie, sameString, sessionCookie, signSession,
  unsignSession, verifyPassword,
} from './auth.ts';
import { FieldError, formValues } from './fields.ts';
import type { Html } from './html.ts';
import type { PageContext } from './layout.ts';
import * as pages from './pages.ts';
import * as store from './store.ts';
import { sendTestEvent } from './test-event.ts';
import { rulePage, rulesPage } from './rules-pages.ts';
import { checkRules, listRules, readRule } from '../rules/rules.ts';

export interface ConsoleOptions {
  readonly db: Db;
  readonly log: Logger;
  /** Where this instance's provisioning.log is (espf run passes ESPF_LOG_DIR; default ./log). */
  readonly logDir?: string;
  /** Session cookies always Secure (espf run passes ESPF_CONSOLE_SECURE_COOKIE=1). */
  readonly secureCookie?: boolean;
}

const MAX_FORM_BYTES = 1024 * 1024;
const PAGE_SIZE = 50;
const STATIC: Record<string, string> = { 'console.css': 'text/css; charset=utf-8', 'console.js': 'text/javascript; charset=utf-8' };
const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
  'x-frame-options': 'DENY',
};

class Refusal extends Error {
  constructor(readonly status: number, message: string) { super(message); }
}

interface Request {
  readonly req: http.IncomingMessage;
  readonly res: http.ServerResponse;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly settings: store.ConsoleSettings;
  session: store.Session | null;
  sessionId: string | null;
}

/** The web console under /console/ (docs/console.md). Off until espf.console.enabled and a user exist. */
export function createConsole(opts: ConsoleOptions) {
  const { db, log } = opts;
  const limiter = new LoginLimiter();
  const jobs = new Map<string, pages.Job>();
  const logDir = opts.logDir ?? 'log';

  function send(res: http.ServerResponse, status: number, body: Html | string, headers: Record<string, string> = {}): void {
    res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', ...SECURITY_HEADERS, ...headers });
    res.end(String(body));
  }

  function redirect(res: http.ServerResponse, to: string, headers: Record<string, string> = {}): void {
    res.writeHead(303, { location: to, 'cache-control': 'no-store', ...headers });
    res.end();
  }

  function ctx(r: Request): PageContext {
    return { session: r.session, path: r.path };
  }

  function secure(req: http.IncomingMessage): boolean {
    return opts.secureCookie === true || req.headers['x-forwarded-proto'] === 'https';
  }

  async function serveStatic(res: http.ServerResponse, name: string): Promise<void> {
    const type = STATIC[name];
    if (!type) return send(res, 404, 'not found', { 'content-type': 'text/plain' });
    const text = await readFile(new URL(`./static/${name}`, import.meta.url), 'utf8');
    res.writeHead(200, { 'content-type': type, 'cache-control': 'max-age=300', 'x-content-type-options': 'nosniff' });
    res.end(text);
  }

  function readForm(req: http.IncomingMessage): Promise<URLSearchParams> {
    const type = String(req.headers['content-type'] ?? '');
    if (!type.startsWith('application/x-www-form-urlencoded')) {
      return Promise.reject(new Refusal(415, 'send the form as application/x-www-form-urlencoded'));
    }
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_FORM_BYTES) { reject(new Refusal(413, 'the form is too large')); req.destroy(); return; }
        chunks.push(c);
      });
      req.once('end', () => resolve(new URLSearchParams(Buffer.concat(chunks).toString('utf8'))));
      req.once('error', reject);
    });
  }

  /** A cross-site form post carries a foreign Origin: refused before anything else. */
  function checkOrigin(req: http.IncomingMessage): void {
    const origin = req.headers.origin;
    if (origin === undefined) return;
    let host: string;
    try { host = new URL(origin).host; } catch { throw new Refusal(403, 'refused: a change must come from a console page (bad Origin)'); }
    const own = [req.headers.host, req.headers['x-forwarded-host']].flatMap((h) => String(h ?? '').split(',')).map((h) => h.trim()).filter(Boolean);
    if (!own.includes(host)) throw new Refusal(403, 'refused: a change must come from a console page (Origin is another site)');
  }

  async function loadSession(r: Request): Promise<void> {
    const cookie = readCookie(r.req.headers.cookie, COOKIE);
    if (!cookie) return;
    const id = unsignSession(cookie, r.settings.session_secret);
    if (!id) return;
    r.session = await store.findSession(db, id);
    r.sessionId = r.session ? id : null;
  }

  async function login(r: Request): Promise<void> {
    const next = safeNext(r.query.get('next'));
    if (r.req.method === 'GET') return send(r.res, 200, pages.loginPage(null, next));
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
      return send(r.res, 429, pages.loginPage(`Too many failed logins: try again in ${wait} s.`, to, user), { 'retry-after': String(wait) });
    }
    const found = user ? await store.findUser(db, user) : null;
    const ok = await verifyPassword(password, found?.password_hash ?? null);
    if (!ok || !found) {
      for (const k of keys) limiter.fail(k);
      log.warn({ user, remote: r.req.socket.remoteAddress }, 'console: wrong user name or password');
      return send(r.res, 401, pages.loginPage('Wrong user name or password.', to, user));
    }
    const id = newSessionId();
    await store.createSession(db, id, found.name, newCsrfToken(), r.settings.session_ttl_s);
    log.info({ user: found.name, role: found.role }, 'console: logged in');
    redirect(r.res, to, { 'set-cookie': sessionCookie(signSession(id, r.settings.session_secret), r.settings.session_ttl_s, secure(r.req)) });
  }

  async function route(r: Request): Promise<void> {
    const { req, res, path: p } = r;
    const c = ctx(r);
    const get = req.method === 'GET' || req.method === 'HEAD';
    let form = new URLSearchParams();
    if (!get) {
      if (req.method !== 'POST') throw new Refusal(405, 'use GET or POST');
      checkOrigin(req);
      form = await readForm(req);
      if (!sameString(form.get('_csrf') ?? '', r.session!.csrf)) {
        throw new Refusal(403, 'refused: the form is stale or did not come from this console (CSRF token missing or wrong); reload the page');
      }
      if (p === '/console/logout') {
        await store.deleteSession(db, r.sessionId!);
        return redirect(res, '/console/login', { 'set-cookie': clearedCookie(secure(req)) });
      }
      if (r.session!.role !== 'admin') throw new Refusal(403, `refused: ${r.session!.user} is a viewer; only an admin can change anything`);
    }
    const user = r.session!.user;
    let m: RegExpExecArray | null;

    if (p === '/console/' && get) {
      return send(res, 200, pages.overviewPage(c, await store.overview(db)));
    }
    if (p === '/console/matrix') {
      let error: string | null = null;
      let ok: string | null = doneMessage(r.query);
      if (!get) {
        const [kind, a, b] = (form.get('op') ?? '').split('|');
        try {
          if (kind === 'type' && a) await store.setTypeEnabled(db, user, a, b === 'on');
          else if (kind === 'handler' && a) await store.setHandlerEnabled(db, user, a, b === 'on');
          else if ((kind === 'sub' || kind === 'unsub') && a && b) await store.setSubscribed(db, user, a, b, kind === 'sub');
          else throw new Refusal(400, 'unknown change');
          return redirect(res, `/console/matrix?done=${encodeURIComponent(`${kind}|${a}|${b}`)}`);
        } catch (err) {
          error = refusalText(err);
          ok = null;
        }
      }
      const [m2, handlers] = await Promise.all([readMatrix(db), store.handlerRows(db)]);
      return send(res, error ? 422 : 200, pages.matrixPage(c, m2, handlers, { ok, error }));
    }
    if (p === '/console/handlers' && get) {
      return send(res, 200, pages.handlersPage(c, await store.handlerRows(db)));
    }
    if ((m = /^\/console\/handlers\/([^/]+)(\/test)?$/.exec(p))) {
      const name = decodeURIComponent(m[1]!);
      const row = await store.readHttpHandler(db, name);
      if (!row) {
        const [h] = (await store.handlerRows(db)).filter((x) => x.handler === name);
        if (!h || !get) throw new Refusal(404, `unknown handler ${name}`);
        const consumes = await store.consumes(db, name);
        return send(res, 200, pages.dispatcherPage(c, h, consumes));
      }
      if (get) return send(res, 200, pages.handlerPage(c, name, row, { ok: doneMessage(r.query) }));
      if (m[2]) {
        const answers = await sendTestEvent(row);
        log.info({ handler: name, user, answers: answers.map((a) => a.answer) }, 'console: test event sent');
        return send(res, 200, pages.handlerPage(c, name, row, { test: answers }));
      }
      try {
        const values = formValues(form, row);
        await store.updateHttpHandler(db, user, name, values);
        return redirect(res, `/console/handlers/${encodeURIComponent(name)}?done=saved`);
      } catch (err) {
        const column = err instanceof FieldError ? err.column : columnOf(err);
        const submitted: Record<string, unknown> = {};
        for (const [k, v] of form) if (k !== '_csrf' && !k.startsWith('clear_')) submitted[k] = k === 'url' ? v.split(/\r?\n/).map((s) => s.trim()).filter(Boolean) : v;
        for (const s of store.SECRET_COLUMNS) delete submitted[s];
        return send(res, 422, pages.handlerPage(c, name, row, { values: submitted, errorColumn: column, error: refusalText(err) }));
      }
    }
    if (p === '/console/subscribers' && get) {
      const q = (r.query.get('q') ?? '').trim().slice(0, 200);
      if (!q) return send(res, 200, pages.subscriberSearchPage(c, '', null));
      const found = await store.findAccounts(db, q);
      if (found.length === 1) return redirect(res, `/console/subscribers/${found[0].i_account}`);
      return send(res, 200, pages.subscriberSearchPage(c, q, found));
    }
    if ((m = /^\/console\/subscribers\/(\d{1,15})$/.exec(p)) && get) {
      const iAccount = Number(m[1]);
      const [d, attempts] = await Promise.all([store.accountTimeline(db, iAccount), logAttempts(logDir, iAccount)]);
      return send(res, 200, pages.subscriberPage(c, d, iAccount, attempts, { ok: doneMessage(r.query), error: r.query.get('refused') }));
    }
    if (p === '/console/resend' && !get) {
      const keys = parseKeys(form.getAll('key'));
      const back = safeNext(form.get('back'));
      const n = await store.resend(db, user, keys);
      return redirect(res, `${back}${back.includes('?') ? '&' : '?'}done=resend&n=${n}`);
    }
    if (p === '/console/deliveries' && get) {
      const { filter, error, errorField } = await readFilter(r.query);
      const after = parseKeys([r.query.get('after') ?? ''])[0] ?? null;
      const rows = error ? [] : await store.deliveries(db, filter, after, PAGE_SIZE);
      let next: string | null = null;
      if (rows.length === PAGE_SIZE) {
        const q = new URLSearchParams(Object.entries(filter).filter(([, v]) => v) as [string, string][]);
        const last = rows[rows.length - 1];
        q.set('after', `${last.i_event}|${last.handler}`);
        next = `/console/deliveries?${q}`;
      }
      return send(res, error ? 422 : 200, pages.deliveriesPage(c, filter, await store.names(db), rows, next,
        { ok: doneMessage(r.query), error, errorField }));
    }
    if (p === '/console/deliveries/resend' && !get) {
      const fq = new URLSearchParams();
      for (const [k, v] of form) if (k.startsWith('f_')) fq.set(k.slice(2), v);
      const back = `/console/deliveries?${fq}`;
      if (form.get('mode') === 'all') {
        const { filter, error } = await readFilter(fq);
        if (error) throw new Refusal(422, error);
        const job = startJob(filter, user, back);
        return redirect(res, `/console/jobs/${job.id}`);
      }
      const n = await store.resend(db, user, parseKeys(form.getAll('key')));
      return redirect(res, `${back}&done=resend&n=${n}`);
    }
    if ((m = /^\/console\/jobs\/([a-f0-9]{16})$/.exec(p)) && get) {
      const job = jobs.get(m[1]!);
      if (!job) throw new Refusal(404, 'no such resend job on this instance (jobs are kept in the memory of the espf run that started them)');
      return send(res, 200, pages.jobPage(c, job));
    }
    if (p === '/console/rules' && get) {
      const [rules, check] = await Promise.all([listRules(db), checkRules(db)]);
      return send(res, 200, rulesPage(c, rules, check));
    }
    if ((m = /^\/console\/rules\/(.+)$/.exec(p)) && get) {
      const name = decodeURIComponent(m[1]!);
      try {
        return send(res, 200, rulePage(c, await readRule(db, name)));
      } catch (err) {
        if ((err as { code?: string }).code === 'ESPF_UNKNOWN_RULE') throw new Refusal(404, oneLine(err));
        throw err;
      }
    }
    if (p === '/console/audit' && get) {
      return send(res, 200, pages.auditPage(c, await store.recentAudit(db, 200)));
    }
    throw new Refusal(404, `not found: ${p.slice(0, 100)}`);
  }

  async function readFilter(q: URLSearchParams): Promise<{ filter: store.DeliveryFilter; error: string | null; errorField: string | null }> {
    const pick = (k: string) => { const v = (q.get(k) ?? '').trim(); return v ? v.slice(0, 200) : undefined; };
    const filter: store.DeliveryFilter = { handler: pick('handler'), type: pick('type'), state: pick('state'), since: pick('since'), until: pick('until') };
    if (filter.state && !(store.STATES as readonly string[]).includes(filter.state)) {
      return { filter, error: `state ${JSON.stringify(filter.state)} is not one of ${store.STATES.join(', ')}`, errorField: 'state' };
    }
    for (const k of ['since', 'until'] as const) {
      const v = filter[k];
      if (!v) continue;
      try {
        await store.checkTimestamp(db, v);
      } catch (err) {
        if (sqlState(err) === undefined) throw err;
        return { filter, error: `${k}: ${oneLine(err)}`, errorField: k };
      }
    }
    return { filter, error: null, errorField: null };
  }

  function startJob(filter: store.DeliveryFilter, user: string, back: string): pages.Job {
    const job: pages.Job = { id: randomBytes(8).toString('hex'), total: 0, done: 0, requeued: 0, finished: false, error: null, back };
    jobs.set(job.id, job);
    if (jobs.size > 100) jobs.delete(jobs.keys().next().value!);
    const until = new Date();
    void (async () => {
      try {
        job.total = await store.countMatching(db, filter);
        let after: { i_event: number; handler: string } | null = null;
        for (;;) {
          const keys = await store.finishedKeys(db, filter, after, 1000, until);
          if (keys.length === 0) break;
          job.requeued += await store.resend(db, user, keys);
          job.done += keys.length;
          after = keys[keys.length - 1]!;
        }
        log.info({ user, filter, requeued: job.requeued }, 'console: resend of all matching deliveries done');
      } catch (err) {
        job.error = refusalText(err);
        log.error({ err: oneLine(err) }, 'console: resend job failed');
      } finally {
        job.finished = true;
      }
    })();
    return job;
  }

  async function serve(req: http.IncomingMessage, res: http.ServerResponse, p: string): Promise<void> {
    if (p === '/console') return redirect(res, '/console/');
    if (p.startsWith('/console/static/')) return serveStatic(res, p.slice('/console/static/'.length));
    let settings: store.ConsoleSettings | null;
    try {
      settings = await store.readSettings(db);
    } catch (err) {
      if (sqlState(err) === SQLSTATE.undefinedTable) return send(res, 404, pages.offPage('The console is not installed in this database (espf.console is missing): run espf migrate.'));
      throw err;
    }
    if (!settings?.enabled) return send(res, 404, pages.offPage('The console is off: espf.console.enabled is false.'));
    if (settings.users === 0) return send(res, 404, pages.offPage('The console has no users (espf.console_users is empty).'));
    const r: Request = { req, res, path: p, query: new URL(req.url ?? '/', 'http://x').searchParams, settings, session: null, sessionId: null };
    if (p === '/console/login') return login(r);
    await loadSession(r);
    if (!r.session) {
      if (req.method === 'GET' || req.method === 'HEAD') {
        const next = p + (r.query.size ? `?${r.query}` : '');
        return redirect(res, `/console/login?next=${encodeURIComponent(next)}`);
      }
      throw new Refusal(401, 'refused: not logged in, or the session has expired; log in again');
    }
    await route(r);
  }

  return {
    /** Routes /console/…; returns false when the path is not the console's. */
    handle(req: http.IncomingMessage, res: http.ServerResponse, p: string): boolean {
      if (p !== '/console' && !p.startsWith('/console/')) return false;
      serve(req, res, p).catch((err: unknown) => {
        if (res.headersSent) { res.destroy(); return; }
        if (err instanceof Refusal) {
          if (!req.complete) req.resume();
          return send(res, err.status, pages.errorPage({ session: null, path: p }, err.status === 404 ? 'Not found' : 'Refused', err.message));
        }
        log.error({ err: oneLine(err), path: p }, 'console: request failed');
        send(res, 500, pages.errorPage({ session: null, path: p }, 'Error', 'internal error: see the espf run log'));
      });
      return true;
    },
  };
}

/** The database's message (one line); our own refusals as they are. */
function refusalText(err: unknown): string {
  return oneLine(err);
}

/** The column a database refusal names (espf.refuse sets it), if any. */
function columnOf(err: unknown): string | null {
  const c = (err as { column?: unknown } | null)?.column;
  return typeof c === 'string' && c ? c : null;
}

function safeNext(v: string | null | undefined): string {
  return v && /^\/console\/[^\s\\]*$/.test(v) && !v.startsWith('//') ? v : '/console/';
}

function parseKeys(values: string[]): { i_event: number; handler: string }[] {
  const out: { i_event: number; handler: string }[] = [];
  for (const v of values) {
    const m = /^(\d{1,15})\|(.{1,63})$/.exec(v);
    if (m) out.push({ i_event: Number(m[1]), handler: m[2]! });
  }
  return out;
}

function doneMessage(q: URLSearchParams): string | null {
  const done = q.get('done');
  if (!done) return null;
  if (done === 'saved') return 'Saved.';
  if (done === 'resend') {
    const n = Number(q.get('n') ?? 0);
    return `${n} ${n === 1 ? 'delivery' : 'deliveries'} re-queued: the instance serving the handler sends again within about a second.`;
  }
  const [kind, a, b] = done.split('|');
  if (kind === 'type') return `Capture of ${a} switched ${b}.`;
  if (kind === 'handler') return `Handler ${a} ${b === 'on' ? 'enabled' : 'disabled'}.`;
  if (kind === 'sub') return `${a} subscribed to ${b}.`;
  if (kind === 'unsub') return `${a} unsubscribed from ${b}.`;
  return null;
}

/** The last attempts of an account in this instance's provisioning.log (its last 2 MiB), newest first. */
async function logAttempts(dir: string, iAccount: number): Promise<pages.LogAttempt[]> {
  let fh;
  try {
    fh = await open(path.join(dir, 'provisioning.log'), 'r');
  } catch {
    return [];
  }
  try {
    const { size } = await fh.stat();
    const len = Math.min(size, 2 * 1024 * 1024);
    const buf = Buffer.alloc(len);
    await fh.read(buf, 0, len, size - len);
    const out: pages.LogAttempt[] = [];
    const needle = `"i_account":${iAccount},`;
    for (const line of buf.toString('utf8').split('\n').reverse()) {
      if (!line.includes(needle)) continue;
      try {
        const o = JSON.parse(line);
        if (o.i_account === iAccount) out.push(o);
      } catch { /* a partial first line */ }
      if (out.length >= 100) break;
    }
    return out;
  } finally {
    await fh.close();
  }
}

