import { readFile } from 'node:fs/promises';
import type http from 'node:http';
import { HttpRefusal, readBody } from '../run/http-helpers.ts';
import type { Html } from './html.ts';

/**
 * The console's HTTP plumbing: answers (pages, redirects, static files) with
 * its security headers, the form reader and the Origin check. Refusals are
 * the HttpRefusal of src/run/http-helpers.ts, shared with the status API.
 */
export { HttpRefusal as Refusal } from '../run/http-helpers.ts';

const MAX_FORM_BYTES = 1024 * 1024;
const STATIC: Record<string, string> = { 'console.css': 'text/css; charset=utf-8', 'console.js': 'text/javascript; charset=utf-8' };
const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
  'x-frame-options': 'DENY',
};

export function send(res: http.ServerResponse, status: number, body: Html | string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', ...SECURITY_HEADERS, ...headers });
  res.end(String(body));
}

export function redirect(res: http.ServerResponse, to: string, headers: Record<string, string> = {}): void {
  res.writeHead(303, { location: to, 'cache-control': 'no-store', ...headers });
  res.end();
}

export async function serveStatic(res: http.ServerResponse, name: string): Promise<void> {
  const type = Object.hasOwn(STATIC, name) ? STATIC[name] : undefined;
  if (!type) return send(res, 404, 'not found', { 'content-type': 'text/plain' });
  const text = await readFile(new URL(`./static/${name}`, import.meta.url), 'utf8');
  res.writeHead(200, { 'content-type': type, 'cache-control': 'max-age=300', 'x-content-type-options': 'nosniff' });
  res.end(text);
}

export async function readForm(req: http.IncomingMessage): Promise<URLSearchParams> {
  const type = String(req.headers['content-type'] ?? '');
  if (!type.startsWith('application/x-www-form-urlencoded')) {
    throw new HttpRefusal(415, 'send the form as application/x-www-form-urlencoded');
  }
  return new URLSearchParams((await readBody(req, MAX_FORM_BYTES, 'the form is too large')).toString('utf8'));
}

/** A cross-site form post carries a foreign Origin: refused before anything else. */
export function checkOrigin(req: http.IncomingMessage): void {
  const origin = req.headers.origin;
  if (origin === undefined) return;
  let host: string;
  try { host = new URL(origin).host; } catch { throw new HttpRefusal(403, 'refused: a change must come from a console page (bad Origin)'); }
  const own = [req.headers.host, req.headers['x-forwarded-host']].flatMap((h) => String(h ?? '').split(',')).map((h) => h.trim()).filter(Boolean);
  if (!own.includes(host)) throw new HttpRefusal(403, 'refused: a change must come from a console page (Origin is another site)');
}

/**
 * Where to go after a login or a resend: a console path, else the overview. Only
 * printable ASCII (what a Location header can carry): anything else, a non-Latin-1
 * `next` among it, goes to the overview.
 */
export function safeNext(v: string | null | undefined): string {
  return v && v.length <= 2000 && /^\/console\/[\x21-\x7e]*$/.test(v) && !v.includes('\\') ? v : '/console/';
}

/** A path segment of a console URL, decoded; a malformed %-escape is a 404 (not a 500). */
export function pathName(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpRefusal(404, 'not found: the path has a malformed %-escape');
  }
}

/** Deliveries one "Resend selected" may name: two pages of the subscriber timeline, many of the deliveries page. */
export const MAX_KEYS = 1000;

/** (i_event, handler) keys of a form, written i_event|handler; malformed ones are left out; more than MAX_KEYS are refused. */
export function parseKeys(values: string[]): { i_event: number; handler: string }[] {
  if (values.length > MAX_KEYS) {
    throw new HttpRefusal(413, `refused: ${values.length} deliveries selected; one resend takes at most ${MAX_KEYS} (nothing was re-queued): select fewer, or use "Resend all matching"`);
  }
  const out: { i_event: number; handler: string }[] = [];
  for (const v of values) {
    const m = /^(\d{1,15})\|(.{1,63})$/.exec(v);
    if (m) out.push({ i_event: Number(m[1]), handler: m[2]! });
  }
  return out;
}
