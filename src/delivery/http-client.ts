import type { LookupFunction } from 'node:net';
import { readEnv } from '../config/env.ts';
import { readCaFile } from '../security/ca-file.ts';
import type { IncomingHttpHeaders } from 'node:http';
import { Agent, errors as undiciErrors, type Dispatcher } from 'undici';
import type { HttpSettings } from '../config/snapshot.ts';
import { httpUrlProblem } from '../config/http-url.ts';
import { oneLine } from '../errors.ts';
import { redactText, redactUrl } from '../security/redact.ts';
import { authHeaders, secretsIn } from './auth.ts';
import type { MessageRef } from './standard-webhooks.ts';
import type { AnswerNeeds } from './steps/plan.ts';
import type { StepRequest } from './steps/render.ts';

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

/**
 * Keep-alive connections per origin, one request on each at a time (no
 * pipelining): what an http handler can have on the wire to one URL
 * (src/delivery/attempter.ts starts no more attempts than that).
 */
export const CONNECTIONS_PER_ORIGIN = 128;

const MAX_ERROR_BODY = 512;     // bytes of a non-2xx answer kept for the log
const MAX_OK_BODY = 65536;      // bytes of a 2xx answer read; the rest is dropped (with the connection)

/** Keep-alive connection pools for one http handler (rebuilt when its CA bundle changes). */
export class HttpClient {
  private agent: Agent | null = null;
  private caFile: string | null;

  /** `connect`: extra socket options (the console's test events pass a `lookup` that refuses denied addresses). */
  constructor(caFile: string | null, private readonly connect?: { readonly lookup?: LookupFunction }) {
    this.caFile = caFile;
  }

  /** The agent while its ca_file is being read (src/security/ca-file.ts). */
  private building: Promise<Agent> | null = null;

  /**
   * Built on first use, so a ca_file that cannot be read fails the attempt
   * (with a reason naming it) instead of the handler; read again until it works.
   * The file is read asynchronously; once built, the agent is returned at once.
   */
  private agentFor(caFile: string | null): Agent | Promise<Agent> {
    if (caFile === this.caFile) {
      if (this.agent) return this.agent;
      if (this.building) return this.building;
    }
    const old = this.agent;
    this.agent = null;
    this.caFile = caFile;
    if (old) void old.close().catch(() => undefined);
    const building = makeAgent(caFile, this.connect);
    this.building = building;
    building.then((a) => {
      if (this.building === building) { this.agent = a; this.building = null; } else void a.close().catch(() => undefined);
    }, () => {
      if (this.building === building) this.building = null;
    });
    return building;
  }

  /**
   * One POST of `body` to `url` for `message` (the delivery's item: its
   * handler and event make the webhook-id that auth_method StandardWebhooks
   * sends, src/delivery/standard-webhooks.ts).
   */
  async post(url: string, body: string, settings: HttpSettings, message: MessageRef): Promise<PostResult> {
    const started = performance.now();
    const elapsed = () => Math.round((performance.now() - started) * 10) / 10;
    const target = targetOf(url);
    if (target.problem !== null) {
      return { ok: false, status: null, reason: `url ${redactUrl(url)} cannot be used: ${target.problem}`, retryAfterMs: null, durationMs: 0, permanent: true };
    }
    try {
      const { answer: a, secrets } = await this.exchange(target.origin, target.path, 'POST', { 'content-type': 'application/json' }, body, settings, message, null);
      if (a.status === null) return { ok: false, status: null, reason: describeError(a.broken, settings.request_timeout), retryAfterMs: null, durationMs: elapsed() };
      if (a.status >= 200 && a.status < 300) {
        // At most 64 KiB of the answer is read, the rest dropped (with the connection if it is longer).
        // An answer that never completes (request_timeout) or breaks off is a failed attempt.
        if (a.broken !== null) {
          return { ok: false, status: a.status, reason: `HTTP ${a.status} but the answer did not complete: ${describeError(a.broken, settings.request_timeout)}`, retryAfterMs: null, durationMs: elapsed() };
        }
        return { ok: true, status: a.status, durationMs: elapsed() };
      }
      // A receiver may echo the credentials back: they never reach a log or a row.
      const snippet = redactText(a.text, secrets).slice(0, MAX_ERROR_BODY).replace(/\s+/g, ' ').trim();
      const retryAfterMs = a.status === 429 || a.status === 503 ? parseRetryAfter(a.headers['retry-after']) : null;
      const location = a.status >= 300 && a.status < 400 ? ` (redirect to ${String(a.headers.location ?? '?')} not followed)` : '';
      return { ok: false, status: a.status, reason: `HTTP ${a.status}${location}${snippet ? `: ${snippet}` : ''}`, retryAfterMs, durationMs: elapsed() };
    } catch (err) {
      return { ok: false, status: null, reason: describeError(err, settings.request_timeout), retryAfterMs: null, durationMs: elapsed() };
    }
  }

  /**
   * One request of a request step (src/delivery/steps/run.ts): its method,
   * headers and body, with the handler's auth headers (`message`: the
   * webhook-id of StandardWebhooks, one per step); the answer's status,
   * headers and up to 64 KiB of its body are read whatever the status
   * (`needs`: of a 2xx answer, its headers and text only when they are read;
   * a longer answer fails the step all the same).
   */
  async request(r: StepRequest, settings: HttpSettings, message: MessageRef, needs: AnswerNeeds = WHOLE): Promise<StepExchange> {
    const started = performance.now();
    const elapsed = () => Math.round((performance.now() - started) * 10) / 10;
    let secrets: readonly string[] = r.secrets;
    try {
      // r.headers is this request's own (rendered for it): the Date and auth headers are added to it.
      const x = await this.exchange(r.origin, r.target, r.method as Dispatcher.HttpMethod, r.headers, r.body, settings, message, needs);
      const a = x.answer;
      if (x.secrets.length > 0) secrets = [...r.secrets, ...x.secrets];
      if (a.status === null || a.broken !== null) {
        const why = describeError(a.broken, settings.request_timeout);
        return { status: a.status, headers: {}, text: '', error: a.status === null ? why : `HTTP ${a.status} but the answer did not complete: ${why}`, secrets, durationMs: elapsed() };
      }
      let h: Record<string, string> = NONE;
      if (a.headers !== NO_HEADERS) {
        h = {};
        for (const [k, v] of Object.entries(a.headers)) if (v !== undefined) h[k.toLowerCase()] = Array.isArray(v) ? v.join(', ') : v;
      }
      return { status: a.status, headers: h, text: a.text, error: null, secrets, durationMs: elapsed() };
    } catch (err) {
      return { status: null, headers: {}, text: '', error: describeError(err, settings.request_timeout), secrets, durationMs: elapsed() };
    }
  }

  /**
   * Sends one request with the Date header and the handler's auth headers
   * added to `headers`. max_wait_time bounds how long an async handler waits
   * for a reply; request_timeout bounds every request (no answer, or one that
   * stops coming). `step`: an answer of a request step, up to 64 KiB of any
   * answer is read (of a 2xx what it needs); otherwise only what an error
   * message quotes. Returns the answer and the secrets the request carried
   * (masked wherever the answer is quoted).
   */
  private async exchange(origin: string, path: string, method: Dispatcher.HttpMethod, headers: Record<string, string>,
    body: string | undefined, settings: HttpSettings, message: MessageRef, step: AnswerNeeds | null): Promise<{ answer: Answer; secrets: string[] }> {
    const timeoutMs = Math.min(settings.request_timeout, settings.async_mode ? settings.max_wait_time : Infinity) * 1000;
    const date = httpDate();
    headers.date = date;
    const auth = authHeaders(settings, date, message, body ?? '');
    for (let i = 0; i < auth.length; i++) headers[auth[i]![0]] = auth[i]![1];
    const secrets = secretsIn(settings, auth);
    const ready = this.agentFor(settings.ca_file);
    const agent = ready instanceof Agent ? ready : await ready;
    const answer = await new Promise<Answer>((resolve) => {
      agent.dispatch({ origin, path, method, headers, body, headersTimeout: timeoutMs, bodyTimeout: timeoutMs },
        step ? new AnswerReader(MAX_OK_BODY, resolve, step) : new AnswerReader(MAX_ERROR_BODY + Math.max(0, ...secrets.map((x) => x.length)), resolve));
    });
    return { answer, secrets };
  }

  async close(): Promise<void> {
    const building = this.building;
    this.building = null;
    await this.agent?.close().catch(() => undefined);
    await building?.then((a) => a.close()).catch(() => undefined);
  }
}

/** What came back for one request step: an answer (status, headers, body text), or why there was none (`error`). */
export interface StepExchange {
  readonly status: number | null;
  readonly headers: Readonly<Record<string, string>>;
  readonly text: string;
  readonly error: string | null;
  /** Every secret the request carried (its own and the handler's auth): masked in messages. */
  readonly secrets: readonly string[];
  readonly durationMs: number;
}

async function makeAgent(caFile: string | null, extra?: { readonly lookup?: LookupFunction }): Promise<Agent> {
  const ca = caFile ? await readCaFile(caFile, readEnv().caDir) : undefined;
  return new Agent({
    keepAliveTimeout: 30_000,
    connections: CONNECTIONS_PER_ORIGIN,
    pipelining: 1,
    maxResponseSize: -1,
    connect: ca || extra ? { ...(ca ? { ca } : {}), ...extra } : undefined,
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

/** What came back for one POST. */
interface Answer {
  /** The HTTP status; null when no answer came (then `broken` says why). */
  readonly status: number | null;
  /** The answer's headers as undici gives them (names in lower case; a repeated one as an array): of an answer that is not 2xx, or of every answer of a request step; otherwise empty. */
  readonly headers: IncomingHttpHeaders;
  /** The start of the body of an answer that is not 2xx (for the error message); of a request step, up to 64 KiB of any answer. */
  readonly text: string;
  /** The error that broke the answer off, or null when it completed (or was cut short by us). */
  readonly broken: unknown;
}

/** The answer to a request step is longer than what is read of it. */
const TOO_LONG = Object.assign(new Error(`the answer is longer than ${MAX_OK_BODY} bytes`), { code: 'ESPF_ANSWER_TOO_LONG' });

/** Dropping the rest of a long answer: not an error of the attempt. */
const DROPPED = Object.assign(new Error('the rest of the answer is dropped'), { code: 'ESPF_ANSWER_DROPPED' });

/** The headers of an answer whose headers are not read. */
const NO_HEADERS: IncomingHttpHeaders = Object.freeze({}) as IncomingHttpHeaders;
/** A step answer's headers when they are not read. */
const NONE: Record<string, string> = Object.freeze({}) as Record<string, string>;
/** Everything of a step's answer is read (a caller that does not say). */
const WHOLE: AnswerNeeds = { headers: true, body: true, text: true };

/**
 * The raw header lines of an answer (name, value, name, value, …) as an
 * object, as undici's own parseHeaders makes it: names in lower case, values
 * as latin1 text, a repeated header as an array of its values.
 */
export function headersObject(raw: readonly (Buffer | string)[]): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const key = raw[i]!.toString('latin1').toLowerCase();
    const value = raw[i + 1]!.toString('latin1');
    const had = Object.hasOwn(out, key) ? out[key] : undefined;
    if (had === undefined) {
      if (key === '__proto__') Object.defineProperty(out, key, { value, enumerable: true, configurable: true, writable: true });
      else out[key] = value;
    } else if (typeof had === 'string') out[key] = [had, value];
    else had.push(value);
  }
  return out;
}

/**
 * Reads one answer as undici delivers it, with no stream in between: a 2xx
 * body is counted up to MAX_OK_BODY bytes and not kept; of another answer the
 * first `keep` characters are kept. Past either limit the rest is dropped with
 * the connection.
 *
 * It implements the handler interface undici's client calls itself (onConnect,
 * onHeaders, onData, onComplete, onError): a handler of the newer one
 * (onRequestStart, onResponseStart, …) is wrapped per request in an adapter
 * that also turns every answer's raw headers into an object. Here the headers
 * become an object only for an answer that is not 2xx (Retry-After, Location)
 * or one a request step reads.
 */
class AnswerReader implements Dispatcher.DispatchHandler {
  private status: number | null = null;
  private headers: IncomingHttpHeaders = NO_HEADERS;
  private bytes = 0;
  private text = '';
  private settled = false;
  private abort: ((err?: Error) => void) | null = null;

  /** Of a request step's answer (`step`): any answer is read up to MAX_OK_BODY bytes, a longer one breaks off; of a 2xx the headers and text are kept as `step` says. */
  private readonly all: boolean;
  /** Keep the text of a 2xx (a request step's that is read). */
  private readonly okText: boolean;

  constructor(private readonly keep: number, private readonly resolve: (a: Answer) => void, private readonly step: AnswerNeeds | null = null) {
    this.all = step !== null;
    this.okText = step !== null && step.text;
  }

  onConnect(abort: (err?: Error) => void): void {
    this.abort = abort;
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[]): boolean {
    if (statusCode < 200) return true; // 1xx: the answer is still to come
    this.status = statusCode;
    if (statusCode >= 300 || this.step?.headers === true) this.headers = headersObject(rawHeaders);
    return true;
  }

  /** false pauses the connection: past a limit nothing more is read. */
  onData(chunk: Buffer): boolean {
    if (this.settled) return false;
    this.bytes += chunk.length;
    if (this.all) {
      if (this.okText || this.status === null || this.status >= 300) this.text += chunk.toString('utf8');
      if (this.bytes > MAX_OK_BODY) {
        this.settle(TOO_LONG);
        this.drop();
        return false;
      }
      return true;
    }
    const ok = this.status !== null && this.status < 300;
    if (!ok) this.text += chunk.toString('utf8');
    if (ok ? this.bytes > MAX_OK_BODY : this.text.length >= this.keep) {
      this.settle(null);
      this.drop();
      return false;
    }
    return true;
  }

  onComplete(): void {
    this.settle(null);
  }

  onError(err: Error): void {
    this.settle(err);
  }

  /** Drops the connection outside undici's parser callback. */
  private drop(): void {
    const abort = this.abort;
    setImmediate(() => abort?.(DROPPED));
  }

  private settle(broken: unknown): void {
    if (this.settled) return;
    this.settled = true;
    // Of an answer that is not 2xx what came before the error is enough (a step reads it whole).
    this.resolve({ status: this.status, headers: this.headers, text: this.text, broken: this.status !== null && this.status >= 300 && !this.all ? null : broken });
  }
}

/** A Retry-After header (seconds or an HTTP date) in ms; null when absent or unreadable. */
export function parseRetryAfter(v: string | string[] | undefined): number | null {
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
  if (e?.code === 'ESPF_SECRET_MISSING' || e?.code === 'ESPF_SECRET_INVALID' || e?.code === 'ESPF_CA_FILE') return msg;
  return code ? `${code}: ${msg}` : msg;
}
