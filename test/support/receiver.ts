import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Received {
  readonly method: string;
  readonly path: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
  readonly json: { event_type: string; variables: Record<string, unknown> & { i_event: number } };
  readonly at: number;            // Date.now() when the request arrived
}

export type Responder = (req: Received) => { status: number; delayMs?: number; headers?: Record<string, string>; body?: string } | 'hang' | 'destroy';

/** A real HTTP server on 127.0.0.1 that records what it receives. */
export class TestReceiver {
  /** Requests answered with a 2xx, in the order they were answered. */
  readonly received: Received[] = [];
  /** Every request whose body arrived, answered or not. */
  readonly arrived: Received[] = [];
  private server?: http.Server;
  private waiters: { pred: () => boolean; resolve: () => void }[] = [];
  respond: Responder = () => ({ status: 200 });
  inFlight = 0;
  maxInFlight = 0;
  port = 0;

  async listen(port = 0): Promise<this> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      this.inFlight++;
      this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        let json: Received['json'];
        try { json = JSON.parse(body); } catch { json = { event_type: '?', variables: { i_event: -1 } }; }
        const r: Received = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body, json, at: Date.now() };
        this.arrived.push(r);
        const answer = this.respond(r);
        const done = () => { this.inFlight--; };
        if (answer === 'hang') { res.on('close', done); return; }
        if (answer === 'destroy') { done(); req.socket.destroy(); return; }
        const send = () => {
          if (answer.status >= 200 && answer.status < 300) this.received.push(r);
          res.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers });
          res.end(answer.body ?? '{}');
          done();
          this.check();
        };
        if (answer.delayMs) setTimeout(send, answer.delayMs); else send();
      });
    });
    this.server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  get url(): string { return `http://127.0.0.1:${this.port}/events`; }

  /** Connections open now (0 once a killed sender's are closed, with every request they carried counted). */
  connections(): Promise<number> { return openConnections(this.server); }

  private check(): void {
    this.waiters = this.waiters.filter((w) => { if (w.pred()) { w.resolve(); return false; } return true; });
  }

  /** Waits until `pred` holds (checked on every request), or fails after timeoutMs. */
  waitFor(pred: () => boolean, timeoutMs = 15_000, what = 'condition'): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; received ${this.received.length}`)), timeoutMs);
      this.waiters.push({ pred, resolve: () => { clearTimeout(timer); resolve(); } });
    });
  }

  /**
   * Waits until `pred` holds, for as long as 2xx answers keep arriving: fails only when
   * none has arrived for stallMs (a slow, loaded machine still passes; a stuck sender does not).
   */
  async waitWhileArriving(pred: () => boolean, stallMs = 15_000, what = 'condition'): Promise<void> {
    for (;;) {
      const seen = this.received.length;
      try {
        await this.waitFor(pred, stallMs, what);
        return;
      } catch (err) {
        if (this.received.length === seen) throw err;
      }
    }
  }

  async close(): Promise<void> {
    if (!this.server) return;
    const s = this.server;
    this.server = undefined;
    s.closeAllConnections();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }
}

/** The connections a server holds open now. */
export function openConnections(server: http.Server | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    if (!server) resolve(0);
    else server.getConnections((err, n) => (err ? reject(err) : resolve(n)));
  });
}

/** Polls an async condition (for database state) until it holds. */
export async function eventually<T>(fn: () => Promise<T | undefined | false>, timeoutMs = 15_000, what = 'condition'): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
