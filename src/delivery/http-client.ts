import { readFileSync } from 'node:fs';
import { Agent, errors as undiciErrors } from 'undici';
import type { HttpSettings } from '../config/snapshot.ts';
import { httpUrlProblem } from '../config/http-url.ts';
import { oneLine } from '../errors.ts';
import { redactText, redactUrl } from '../security/redact.ts';
import { authHeaderValue, secretsIn } from './auth.ts';

/** The outcome of one POST to one URL. */
export type PostResult =
  | { readonly ok: true; readonly status: number; readonly durationMs: number }
  | { readonly ok: false; readonly status: number | null; readonly reason: string; readonly retryAfterMs: number | null; readonly durationMs: number;
      /** No later attempt can succeed (a URL the sender cannot parse): failed for good at once. */
      readonly permanent?: boolean };

/**
 * The JSON body of a request: {"event_type": …, "variables": …}. The type goes
 * out under the receiver's own name when the handler's event_names maps it;
 * everything else (rows, logs, metrics) keeps espf's name.
 */
export function requestBody(event: { readonly event_type: string; readonly variables: unknown }, eventNames: Readonly<Record<string, string>>): string {
  const name = Object.hasOwn(eventNames, event.event_type) ? eventNames[event.event_type]! : event.event_type;
  return JSON.stringify({ event_type: name, variables: event.variables });
}

const MAX_ERROR_BODY = 512;     // bytes of a non-2xx answer kept for the log
const MAX_OK_BODY = 65536;      // bytes of a 2xx answer read; the rest is dropped (with the connection)

/** Keep-alive connection pools for one http handler (rebuilt when its CA bundle changes). */
export class HttpClient {
  private agent: Agent | null = null;
  private caFile: string | null;

  constructor(caFile: string | null) {
    this.caFile = caFile;
  }

  /**
   * Built on first use, so a ca_file that cannot be read fails the attempt
   * (with a reason naming it) instead of the handler; read again until it works.
   */
  private agentFor(caFile: string | null): Agent {
    if (this.agent && caFile === this.caFile) return this.agent;
    const old = this.agent;
    this.agent = null;
    this.caFile = caFile;
    if (old) void old.close().catch(() => undefined);
    this.agent = makeAgent(caFile);
    return this.agent;
  }

  async post(url: string, body: string, settings: HttpSettings): Promise<PostResult> {
    const started = performance.now();
    const elapsed = () => Math.round((performance.now() - started) * 10) / 10;
    // max_wait_time bounds how long an async handler waits for a reply; request_timeout bounds every request.
    const timeoutMs = Math.min(settings.request_timeout, settings.async_mode ? settings.max_wait_time : Infinity) * 1000;
    let auth: string | undefined;
    const target = targetOf(url);
    if (target.problem !== null) {
      return { ok: false, status: null, reason: `url ${redactUrl(url)} cannot be used: ${target.problem}`, retryAfterMs: null, durationMs: 0, permanent: true };
    }
    try {
      const date = httpDate();
      const headers: Record<string, string> = { 'content-type': 'application/json', date };
      auth = authHeaderValue(settings, date);
      if (auth !== undefined) headers[settings.auth_header.toLowerCase()] = auth;
      const res = await this.agentFor(settings.ca_file).request({
        origin: target.origin,
        path: target.path,
        method: 'POST',
        headers,
        body,
        // No answer, or an answer that stops coming, for request_timeout: the attempt fails.
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
      if (res.statusCode >= 200 && res.statusCode < 300) {
        // Read at most 64 KiB of the answer, then drop the rest (and the connection if it is longer).
        // An answer that never completes (request_timeout) or breaks off is a failed attempt.
        const broken = await drainAnswer(res.body);
        if (broken !== null) {
          return { ok: false, status: res.statusCode, reason: `HTTP ${res.statusCode} but the answer did not complete: ${describeError(broken, settings.request_timeout)}`, retryAfterMs: null, durationMs: elapsed() };
        }
        return { ok: true, status: res.statusCode, durationMs: elapsed() };
      }
      // A receiver may echo the credentials back: they never reach a log or a row.
      const snippet = await readSnippet(res.body, secretsIn(settings, auth));
      const retryAfterMs = res.statusCode === 429 || res.statusCode === 503 ? parseRetryAfter(res.headers['retry-after']) : null;
      const location = res.statusCode >= 300 && res.statusCode < 400 ? ` (redirect to ${String(res.headers.location ?? '?')} not followed)` : '';
      return { ok: false, status: res.statusCode, reason: `HTTP ${res.statusCode}${location}${snippet ? `: ${snippet}` : ''}`, retryAfterMs, durationMs: elapsed() };
    } catch (err) {
      return { ok: false, status: null, reason: describeError(err, settings.request_timeout), retryAfterMs: null, durationMs: elapsed() };
    }
  }

  async close(): Promise<void> {
    await this.agent?.close().catch(() => undefined);
  }
}

function makeAgent(caFile: string | null): Agent {
  let ca: Buffer | undefined;
  if (caFile) {
    try {
      ca = readFileSync(caFile);
    } catch (err) {
      const e = err as { code?: string };
      throw Object.assign(new Error(`ca_file ${caFile} cannot be read (${e.code ?? oneLine(err)})`), { code: 'ESPF_CA_FILE' });
    }
  }
  return new Agent({
    keepAliveTimeout: 30_000,
    connections: 128,
    pipelining: 1,
    maxResponseSize: -1,
    connect: ca ? { ca } : undefined,
  });
}

/** Where a POST to a URL goes: parsed once per URL, not once per request. */
interface Target {
  readonly origin: string;
  readonly path: string;
  /** Why the URL cannot be used (src/config/http-url.ts), or null. */
  readonly problem: string | null;
}

const targets = new Map<string, Target>();
const TARGETS_KEPT = 256;

function targetOf(url: string): Target {
  let t = targets.get(url);
  if (t === undefined) {
    const problem = httpUrlProblem(url);
    if (problem !== null) t = { origin: '', path: '', problem };
    else {
      const u = new URL(url);
      t = { origin: u.origin, path: `${u.pathname}${u.search}`, problem: null };
    }
    if (targets.size >= TARGETS_KEPT) targets.clear();
    targets.set(url, t);
  }
  return t;
}

/** The Date header (one-second resolution), formatted once per second. */
let dateSecond = -1;
let dateText = '';
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(now).toUTCString();
  }
  return dateText;
}

const ignore = (): void => undefined;

/** Reads a 2xx answer up to MAX_OK_BODY bytes; null when it ended or was longer, else the error that broke it. */
function drainAnswer(body: NodeJS.ReadableStream & { destroy(): void }): Promise<unknown> {
  return new Promise((resolve) => {
    let n = 0;
    const done = (result: unknown) => {
      body.removeListener('data', onData);
      body.removeListener('end', onEnd);
      body.removeListener('error', onError);
      body.on('error', ignore);   // nothing more is read: a late error has no one to tell
      body.destroy();
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      n += chunk.length;
      if (n > MAX_OK_BODY) done(null);   // the rest is dropped (with the connection)
    };
    const onEnd = () => done(null);
    const onError = (err: unknown) => done(err);
    body.on('data', onData);
    body.once('end', onEnd);
    body.once('error', onError);
  });
}

async function readSnippet(body: AsyncIterable<Buffer> & { destroy(): void }, secrets: readonly string[]): Promise<string> {
  let text = '';
  // Read a little more than is kept, so a secret cut at the end is still recognised and hidden.
  const want = MAX_ERROR_BODY + Math.max(0, ...secrets.map((x) => x.length));
  try {
    for await (const chunk of body) {
      text += chunk.toString('utf8');
      if (text.length >= want) break;
    }
  } catch { /* the answer broke off: what we have is enough */ } finally {
    body.destroy();
  }
  return redactText(text, secrets).slice(0, MAX_ERROR_BODY).replace(/\s+/g, ' ').trim();
}

function parseRetryAfter(v: string | string[] | undefined): number | null {
  const s = Array.isArray(v) ? v[0] : v;
  if (!s) return null;
  if (/^\d+$/.test(s.trim())) return Number(s.trim()) * 1000;
  const t = Date.parse(s);
  return Number.isNaN(t) ? null : Math.max(0, t - Date.now());
}

function describeError(err: unknown, timeoutS: number): string {
  const e = err as { name?: string; code?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError' || e?.code === 'UND_ERR_HEADERS_TIMEOUT' || e?.code === 'UND_ERR_BODY_TIMEOUT' || err instanceof undiciErrors.HeadersTimeoutError) {
    return `timeout: no complete answer within request_timeout (${timeoutS} s)`;
  }
  const code = e?.cause?.code ?? e?.code;
  const msg = oneLine(e?.cause?.message !== undefined ? e.cause : err);
  if (e?.code === 'ESPF_SECRET_MISSING' || e?.code === 'ESPF_CA_FILE') return msg;
  return code ? `${code}: ${msg}` : msg;
}
