import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { openConnections } from './receiver.ts';

/**
 * A real HTTP receiver for hundreds of thousands of events: it answers 200 to
 * every POST and keeps only counts, not the requests (test/support/receiver.ts
 * keeps every request, which is right for a few thousand). Per account it
 * checks the order of first arrivals (commit order is i_event order within an
 * account) and remembers the last event that arrived.
 */
export class CountingReceiver {
  /** POSTs answered. */
  requests = 0;
  /** POSTs of an i_event that had arrived before. */
  duplicates = 0;
  /** The i_events that arrived more than once. */
  readonly duplicated = new Set<number>();
  /** First arrivals of an account's event with a lower i_event than one of the account that arrived first before. */
  readonly outOfOrder: string[] = [];
  private readonly seen = new Set<number>();
  private readonly firstArrived = new Map<number, number>();  // i_account -> highest i_event of its first arrivals
  private readonly lastArrived = new Map<number, number>();   // i_account -> i_event of its latest POST
  private readonly byType = new Map<string, number>();         // distinct events per type
  private waiters: { pred: () => boolean; resolve: () => void }[] = [];
  private from = Infinity;
  /** Distinct events with an i_event of at least `markFrom()`'s, that arrived since it was called or before. */
  sinceMark = 0;
  private server?: http.Server;
  port = 0;

  async listen(): Promise<this> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { event_type: string; variables: { i_event: number; i_account?: number } };
        this.note(body.event_type, body.variables.i_event, body.variables.i_account);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{}');
        if (this.waiters.length) this.waiters = this.waiters.filter((w) => { if (w.pred()) { w.resolve(); return false; } return true; });
      });
    });
    this.server.keepAliveTimeout = 60_000;
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  get url(): string { return `http://127.0.0.1:${this.port}/events`; }

  /** Connections open now (0 once a killed sender's are closed, with every request they carried counted). */
  connections(): Promise<number> { return openConnections(this.server); }

  private note(type: string, iEvent: number, iAccount: number | undefined): void {
    this.requests++;
    if (iAccount !== undefined) this.lastArrived.set(iAccount, iEvent);
    if (this.seen.has(iEvent)) { this.duplicates++; this.duplicated.add(iEvent); return; }
    this.seen.add(iEvent);
    if (iEvent >= this.from) this.sinceMark++;
    this.byType.set(type, (this.byType.get(type) ?? 0) + 1);
    if (iAccount === undefined) return;
    const before = this.firstArrived.get(iAccount);
    if (before !== undefined && before > iEvent) {
      if (this.outOfOrder.length < 20) this.outOfOrder.push(`account ${iAccount}: event ${iEvent} after ${before}`);
    } else {
      this.firstArrived.set(iAccount, iEvent);
    }
  }

  /** Counts from now on (in `sinceMark`) the distinct events with an i_event of at least `iEvent`. */
  markFrom(iEvent: number): void {
    this.from = iEvent;
    this.sinceMark = 0;
    for (const i of this.seen) if (i >= iEvent) this.sinceMark++;
  }

  /** Distinct events of this type that arrived. */
  distinct(type: string): number { return this.byType.get(type) ?? 0; }
  has(iEvent: number): boolean { return this.seen.has(iEvent); }
  /** Every i_event that arrived so far (a copy). */
  arrivedEvents(): Set<number> { return new Set(this.seen); }
  /** The i_event of the account's latest POST. */
  lastOf(iAccount: number): number | undefined { return this.lastArrived.get(iAccount); }

  /** Waits until `pred` holds (checked on every request: keep it cheap), or fails after timeoutMs. */
  waitFor(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const w = { pred, resolve: () => { clearTimeout(timer); resolve(); } };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; ${this.requests} requests, ${this.seen.size} distinct events`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  async close(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server!.close(() => resolve()));
  }
}
