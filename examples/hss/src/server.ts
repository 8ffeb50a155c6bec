// The example HSS provisioning API over HTTP (node:http only), PyHSS-style:
//
//   PUT    /auc/                      {"ki","opc","amf","imsi"}            -> 200 row with auc_id | 400 {"result":"Failed"}
//   GET    /auc/{auc_id}, /auc/imsi/{imsi}                                 -> 200 row | 200 null
//   DELETE /auc/{auc_id}                                                   -> 200 {"result":"OK"} | 200 null | 400 (in use)
//   PUT    /subscriber/               {"imsi","msisdn","auc_id","enabled"?} -> 200 row with subscriber_id | 400
//   GET    /subscriber/{id}, /subscriber/imsi/{imsi}                       -> 200 row | 200 null
//   PATCH  /subscriber/{id}           {"enabled"?, "msisdn"?}              -> 200 row | 200 null | 400
//   DELETE /subscriber/{id}                                                -> 200 {"result":"OK"} | 200 null
//   GET    /_state                    both tables and the requests so far (for tests)
//   POST   /_fail                     {"path","n"}: the next n requests of path get 500 (for retry tests)
//
// With an API key, every request needs the header Provisioning-Key: <key> (else 401).
// See README.md beside this folder.
import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HssTables, Refused, type AucRow, type SubscriberRow } from './tables.ts';

/** One request as the HSS saw it (oldest first in `state().requests`). */
export interface HssRequest {
  readonly method: string;
  readonly path: string;
  /** The JSON it carried (the text when it was not JSON; null when empty). */
  readonly body: unknown;
  /** The answer: status and JSON. */
  readonly status: number;
  readonly answer: unknown;
}

export interface HssState {
  readonly auc: AucRow[];
  readonly subscriber: SubscriberRow[];
  readonly requests: HssRequest[];
}

export interface HssOptions {
  /** TCP port; 0 (the default) picks a free one. */
  readonly port?: number;
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** When set, every request needs `Provisioning-Key: <apiKey>`. */
  readonly apiKey?: string;
  /** How many requests `state().requests` keeps (default 10 000). */
  readonly keepRequests?: number;
}

export interface Hss {
  /** http://host:port (no trailing slash). */
  readonly url: string;
  readonly server: Server;
  /** Copies of both tables and of the requests so far. */
  state(): HssState;
  /**
   * The next `n` requests whose path is `path` (without the query) get 500
   * {"result":"Failed","reason":"injected failure"} and change nothing. A path
   * ending in "*" matches every path that starts with what comes before it.
   */
  failNext(path: string, n: number): void;
  close(): Promise<void>;
}

export const API_KEY_HEADER = 'provisioning-key';
const MAX_BODY = 1024 * 1024;

type Answer = readonly [status: number, body: unknown];

const FAILED = (reason: string): Answer => [400, { result: 'Failed', reason }];
const OK: Answer = [200, { result: 'OK' }];
const NOT_FOUND_ROUTE: Answer = [404, { result: 'Not Found' }];

class BadBody extends Error {}

async function readText(req: IncomingMessage): Promise<string> {
  let size = 0;
  const parts: Buffer[] = [];
  for await (const part of req as AsyncIterable<Buffer>) {
    size += part.length;
    if (size > MAX_BODY) throw new BadBody(`the body is larger than ${MAX_BODY} bytes`);
    parts.push(part);
  }
  return Buffer.concat(parts).toString('utf8');
}

const NOT_JSON = Symbol('not JSON');

function parsed(text: string): unknown {
  try { return JSON.parse(text); } catch { return NOT_JSON; }
}

/** The body as a JSON object, or BadBody. */
function jsonObject(text: string): Record<string, unknown> {
  const v = parsed(text);
  if (v === NOT_JSON) throw new BadBody('the body is not JSON');
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new BadBody('the body is not a JSON object');
  return v as Record<string, unknown>;
}

/** What `state().requests` shows of a body: its JSON, else its text, null when empty. */
function shown(text: string): unknown {
  const v = text === '' ? null : parsed(text);
  return v === NOT_JSON ? text : v;
}

function keyMatches(given: string | string[] | undefined, key: string): boolean {
  if (typeof given !== 'string') return false;
  const a = Buffer.from(given);
  const b = Buffer.from(key);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Row, or 200 null when there is none (PyHSS answers a missing row so). */
const rowOrNull = (row: unknown): Answer => [200, row ?? null];

/** Starts the example HSS and resolves once it listens. */
export async function startHss(options: HssOptions = {}): Promise<Hss> {
  const tables = new HssTables();
  const requests: HssRequest[] = [];
  const keep = options.keepRequests ?? 10_000;
  const failures = new Map<string, number>();

  function injectedFailure(path: string): boolean {
    for (const [pattern, left] of failures) {
      const hit = pattern.endsWith('*') ? path.startsWith(pattern.slice(0, -1)) : path === pattern;
      if (!hit) continue;
      if (left <= 1) failures.delete(pattern); else failures.set(pattern, left - 1);
      return true;
    }
    return false;
  }

  function failNext(path: string, n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`failNext: n must be a non-negative integer, not ${n}`);
    if (n === 0) failures.delete(path); else failures.set(path, n);
  }

  const state = (): HssState => ({ ...tables.state(), requests: requests.map((r) => ({ ...r })) });

  function route(method: string, path: string, text: string): Answer {
    const seg = path.split('/').filter((s) => s !== '');
    const [table, a, b] = seg;
    const id = (s: string | undefined): number | null => (s !== undefined && /^[0-9]{1,15}$/.test(s) ? Number(s) : null);

    if (table === '_state' && seg.length === 1 && method === 'GET') return [200, state()];
    if (table === '_fail' && seg.length === 1 && method === 'POST') {
      const body = jsonObject(text);
      if (typeof body.path !== 'string' || typeof body.n !== 'number' || !Number.isSafeInteger(body.n) || body.n < 0) return FAILED('POST /_fail takes {"path": "/…", "n": 1}');
      failNext(body.path, body.n);
      return OK;
    }
    if (table !== 'auc' && table !== 'subscriber') return NOT_FOUND_ROUTE;

    if (seg.length === 1) {
      if (method !== 'PUT') return [405, { result: 'Failed', reason: `${method} ${path}: use PUT` }];
      const body = jsonObject(text);
      return [200, table === 'auc' ? tables.createAuc(body) : tables.createSubscriber(body)];
    }
    if (seg.length === 3 && a === 'imsi' && method === 'GET') {
      return rowOrNull(tables[table].byImsi(b!));
    }
    const n = id(a);
    if (seg.length !== 2 || n === null) return NOT_FOUND_ROUTE;
    switch (method) {
      case 'GET':
        return rowOrNull(tables[table].byId(n));
      case 'DELETE':
        return (table === 'auc' ? tables.deleteAuc(n) : tables.subscriber.rows.delete(n)) ? OK : [200, null];
      case 'PATCH':
        if (table === 'subscriber') return rowOrNull(tables.updateSubscriber(n, jsonObject(text)));
        break;
    }
    return [405, { result: 'Failed', reason: `${method} ${path} is not offered` }];
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const path = (req.url ?? '/').split('?')[0]!;
    let text = '';
    let answer: Answer;
    try {
      text = await readText(req);
      if (options.apiKey !== undefined && !keyMatches(req.headers[API_KEY_HEADER], options.apiKey)) {
        answer = [401, { result: 'Unauthorized - Provisioning-Key Invalid' }];
      } else if (injectedFailure(path)) {
        answer = [500, { result: 'Failed', reason: 'injected failure' }];
      } else {
        answer = route(method, path, text);
      }
    } catch (err) {
      if (err instanceof Refused || err instanceof BadBody) answer = FAILED(err.message);
      else answer = [500, { result: 'Failed', reason: `internal error: ${err instanceof Error ? err.message : String(err)}` }];
    }
    if (path !== '/_state') {
      requests.push({ method, path, body: shown(text), status: answer[0], answer: answer[1] });
      if (requests.length > keep) requests.splice(0, requests.length - keep);
    }
    const out = JSON.stringify(answer[1]);
    res.writeHead(answer[0], { 'content-type': 'application/json', 'content-length': Buffer.byteLength(out) });
    res.end(out);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ result: 'Failed', reason: String(err) }));
    });
  });
  server.keepAliveTimeout = 60_000;
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => { server.off('error', reject); resolve(); });
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    server,
    state,
    failNext,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
