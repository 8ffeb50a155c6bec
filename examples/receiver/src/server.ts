// The example espf receiver: node:http only, no framework.
//
//   POST <any path>   an espf event (README, "Writing a receiver") -> 200 | 400 | 401 | 405 | 413 | 500
//   GET  /healthz     200 {"ok":true}
//
// Order of checks: method, auth (401), body (413 / 400), dedup on variables.i_event
// (a repeat gets 200 without provisioning again), then provisioning (500 on failure, so
// espf retries; the i_event is only remembered once provisioning succeeded).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DEFAULT_MAX_CLOCK_SKEW_MS, verifyAuth, type AuthConfig } from './auth.ts';
import { LruSet } from './dedup.ts';
import { describeProvisioning, type EspfEvent, type Variables } from './provision.ts';

export type { AuthConfig } from './auth.ts';

export type LogEntry = Record<string, unknown>;

export interface ProcessedEvent {
  /** variables.i_event as a decimal string (the dedup key). */
  i_event: string;
  event_type: string;
  variables: Variables;
  /** What the receiver would provision; empty for a type it has no mapping for. */
  actions: string[];
  /** When it was provisioned (ISO 8601). */
  at: string;
}

export interface ReceiverOptions {
  /** Default `{ method: 'None' }`. */
  auth?: AuthConfig;
  /** The header espf puts the credentials in (espf.http_handlers.auth_header). Default `Authorization`. */
  authHeader?: string;
  /** Signature only: how far the Date header may be from this clock. Default 5 minutes. */
  maxClockSkewMs?: number;
  /** How many i_event values the in-memory dedup set remembers. Default 100 000. */
  dedupCapacity?: number;
  /** Larger bodies get 413. Default 1 MiB. */
  maxBodyBytes?: number;
  /** How many of the most recent events `processed` keeps. Default 1000. */
  keepProcessed?: number;
  /** The clock, ms since the epoch. Default Date.now. */
  now?: () => number;
  /** One call per log line. Default: a JSON line on stdout. */
  log?: (entry: LogEntry) => void;
  /** Does the actual provisioning. Throw (or reject) to answer 500 and have espf retry. */
  provision?: (event: ProcessedEvent) => void | Promise<void>;
}

export interface Receiver {
  server: Server;
  /** Starts listening; port 0 picks a free port. Resolves with the bound address. */
  listen(port?: number, host?: string): Promise<AddressInfo>;
  /** Stops listening and closes open connections. */
  close(): Promise<void>;
  /** The most recently provisioned events, oldest first (repeats are not added). */
  processed: ProcessedEvent[];
}

export class BadRequest extends Error {}

/** Validates a request body: `{"event_type": "...", "variables": {"i_event": 1234, ...}}`. */
export function parseEvent(body: string): EspfEvent & { key: string } {
  let data: unknown;
  try {
    data = JSON.parse(body);
  } catch {
    throw new BadRequest('body is not JSON');
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new BadRequest('body is not a JSON object');
  const { event_type, variables } = data as Record<string, unknown>;
  if (typeof event_type !== 'string' || event_type === '') throw new BadRequest('missing event_type');
  if (typeof variables !== 'object' || variables === null || Array.isArray(variables)) throw new BadRequest('missing variables object');
  const iEvent = (variables as Record<string, unknown>).i_event;
  let key: string;
  if (typeof iEvent === 'number' && Number.isSafeInteger(iEvent) && iEvent >= 0) key = String(iEvent);
  else if (typeof iEvent === 'string' && /^\d+$/.test(iEvent)) key = BigInt(iEvent).toString();
  else throw new BadRequest(iEvent === undefined ? 'missing variables.i_event' : 'variables.i_event is not a non-negative integer');
  return { event_type, variables: variables as Variables, key };
}

class TooLarge extends Error {}

function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > limit) {
        failed = true;
        reject(new TooLarge(`body larger than ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (!failed) resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', (err) => {
      if (!failed) reject(err);
      failed = true;
    });
  });
}

function reply(res: ServerResponse, status: number, body: Record<string, unknown>, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name.toLowerCase()];
  return Array.isArray(v) ? v.join(', ') : v;
}

const defaultLog = (entry: LogEntry): void => {
  process.stdout.write(`${JSON.stringify(entry)}\n`);
};

export function createReceiver(options: ReceiverOptions = {}): Receiver {
  const auth: AuthConfig = options.auth ?? { method: 'None' };
  const authHeader = (options.authHeader ?? 'Authorization').toLowerCase();
  const maxClockSkewMs = options.maxClockSkewMs ?? DEFAULT_MAX_CLOCK_SKEW_MS;
  const maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
  const keepProcessed = options.keepProcessed ?? 1000;
  const now = options.now ?? Date.now;
  const emit = options.log ?? defaultLog;
  const log = (level: string, msg: string, fields: LogEntry = {}): void =>
    emit({ time: new Date(now()).toISOString(), level, msg, ...fields });

  const done = new LruSet(options.dedupCapacity ?? 100_000);
  // Requests for an i_event whose provisioning is still running wait for it instead of
  // provisioning a second time (espf can retry after a timeout while the first is running).
  const inFlight = new Map<string, Promise<ProcessedEvent | null>>();
  const processed: ProcessedEvent[] = [];

  async function provisionOnce(event: EspfEvent, key: string): Promise<ProcessedEvent | null> {
    const record: ProcessedEvent = {
      i_event: key,
      event_type: event.event_type,
      variables: event.variables,
      actions: describeProvisioning(event),
      at: new Date(now()).toISOString(),
    };
    const ids = { i_event: event.variables.i_event, event_type: event.event_type };
    try {
      await options.provision?.(record);
    } catch (err) {
      log('error', 'provisioning failed; espf will retry', { ...ids, error: err instanceof Error ? err.message : String(err) });
      return null;
    }
    if (record.actions.length === 0) log('info', 'no mapping for this event type; acknowledged', ids);
    for (const action of record.actions) log('info', 'would provision', { ...ids, action });
    done.add(key);
    processed.push(record);
    if (processed.length > keepProcessed) processed.splice(0, processed.length - keepProcessed);
    return record;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/healthz') return reply(res, 200, { ok: true });
    if (req.method !== 'POST') {
      req.resume();
      return reply(res, 405, { error: 'method not allowed', reason: 'espf sends POST' }, { Allow: 'POST' });
    }

    const verdict = verifyAuth(auth, {
      authorization: headerValue(req, authHeader),
      date: headerValue(req, 'date'),
      now: now(),
      maxClockSkewMs,
    });
    if (!verdict.ok) {
      req.resume(); // drain the body we will not read
      log('warn', 'refused: bad auth', { reason: verdict.reason, remote: req.socket.remoteAddress });
      const challenge = auth.method === 'Basic' ? 'Basic realm="espf"' : auth.method === 'Signature' ? 'Signature realm="espf",headers="date"' : undefined;
      return reply(res, 401, { error: 'unauthorized', reason: verdict.reason }, challenge ? { 'WWW-Authenticate': challenge } : {});
    }

    let event: EspfEvent & { key: string };
    try {
      event = parseEvent(await readBody(req, maxBodyBytes));
    } catch (err) {
      if (err instanceof TooLarge) {
        log('warn', 'refused: body too large', { remote: req.socket.remoteAddress });
        return reply(res, 413, { error: 'payload too large', reason: err.message }, { Connection: 'close' });
      }
      if (err instanceof BadRequest) {
        log('warn', 'refused: malformed body', { reason: err.message, remote: req.socket.remoteAddress });
        return reply(res, 400, { error: 'bad request', reason: err.message });
      }
      throw err;
    }
    const { key } = event;
    const ids = { i_event: event.variables.i_event, event_type: event.event_type };
    log('info', 'received', ids);

    if (done.has(key)) {
      log('info', 'repeat of an event already provisioned; nothing to do', ids);
      return reply(res, 200, { status: 'duplicate', i_event: key });
    }
    const running = inFlight.get(key);
    if (running) {
      const ok = (await running) !== null;
      log('info', 'repeat of an event provisioned meanwhile', { ...ids, ok });
      return ok
        ? reply(res, 200, { status: 'duplicate', i_event: key })
        : reply(res, 500, { error: 'provisioning failed', i_event: key });
    }
    const attempt = provisionOnce(event, key);
    inFlight.set(key, attempt);
    let record: ProcessedEvent | null;
    try {
      record = await attempt;
    } finally {
      inFlight.delete(key);
    }
    if (!record) return reply(res, 500, { error: 'provisioning failed', i_event: key });
    return reply(res, 200, { status: 'processed', i_event: key, actions: record.actions });
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log('error', 'internal error', { error: err instanceof Error ? err.message : String(err) });
      if (!res.headersSent) reply(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  });

  return {
    server,
    processed,
    listen(port = 8080, host?: string): Promise<AddressInfo> {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          const address = server.address();
          if (address === null || typeof address === 'string') reject(new Error('not listening on a TCP port'));
          else {
            log('info', 'listening', { host: address.address, port: address.port, auth: auth.method });
            resolve(address);
          }
        });
      });
    },
    close(): Promise<void> {
      return new Promise((resolve, reject) => {
        if (!server.listening) return resolve();
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      });
    },
  };
}
