import { sql } from '@databases/pg';
import { loadConfig, type ConfigSnapshot, type HandlerConfig } from '../config/snapshot.ts';
import type { Db } from '../db/connect.ts';
import { isConnectionError, oneLine } from '../errors.ts';
import type { Logger, ProvisioningLog } from '../log/logger.ts';
import { DispatcherRunner } from '../delivery/dispatcher-runner.ts';
import { HttpHandler } from '../delivery/http-handler.ts';
import { accountOf, orderKey, type Item } from '../delivery/item.ts';
import { ResultsWriter, type DeliveryState } from '../delivery/results-writer.ts';
import { AckTracker } from '../stream/ack-tracker.ts';
import { parseLsn } from '../stream/lsn.ts';
import { HEARTBEAT_PREFIX, ReplicationStream, type StreamEvent, type StreamTransaction } from '../stream/replication.ts';
import type { PostResult } from '../delivery/http-client.ts';

export interface SenderOptions {
  readonly db: Db;
  readonly url: string;
  readonly instance: string;
  readonly log: Logger;
  readonly plog: ProvisioningLog;
  readonly configPollMs?: number;      // default 1000: changes apply within 2 s
  readonly heartbeatMs?: number;       // default 10000: an idle slot still advances
  readonly maxUnsettled?: number;      // items not yet durable before the stream is held (back-pressure)
  readonly observe?: SenderObserver;
}

/** Hooks for metrics. */
export interface SenderObserver {
  /** A transaction arrived from the stream (before it is handed out). */
  captured?(tx: StreamTransaction): void;
  /** One POST to one URL finished. */
  attempt?(item: Item, result: PostResult & { url: string }): void;
  /** An item reached a recorded state (DELIVERED, FAILED, RETRY, PENDING). */
  outcome?(item: Item, state: DeliveryState): void;
  /** A dispatcher produced `produced` events from `sources` source events. */
  dispatched?(handler: string, sources: number, produced: number): void;
  streaming?(on: boolean): void;
}

/**
 * One `espf run` instance: streams espf.events from slot espf_<instance>,
 * hands each event to this instance's enabled, subscribed handlers, and
 * acknowledges WAL only past transactions whose every outcome is durable.
 */
export class Sender {
  private config!: ConfigSnapshot;
  private readonly writer: ResultsWriter;
  private readonly http = new Map<string, HttpHandler>();
  private readonly dispatchers = new Map<string, DispatcherRunner>();
  private readonly tracker: AckTracker;
  private readonly stream: ReplicationStream;
  private unsettledItems = 0;
  private resumeWaiters: (() => void)[] = [];
  private replayHorizon = 0n;
  private timers: NodeJS.Timeout[] = [];
  private streaming = false;
  private lastReconnect = 0;
  private lastHandedOut = 0n;
  private stopped = false;
  readonly slot: string;
  private reloading = false;

  constructor(private readonly opts: SenderOptions) {
    this.slot = `espf_${opts.instance}`;
    this.writer = new ResultsWriter(opts.db, opts.instance, opts.log, (err) => this.onDbError(err));
    this.tracker = new AckTracker(0n, (lsn) => this.stream.acknowledge(lsn));
    this.stream = new ReplicationStream({
      url: opts.url, slot: this.slot, db: opts.db, log: opts.log,
      handlers: {
        onTransaction: (tx) => this.onTransaction(tx),
        onHeartbeat: (lsn) => this.tracker.passThrough(lsn),
        onStreaming: () => {
          this.streaming = true;
          opts.observe?.streaming?.(true);
          opts.log.info({ instance: opts.instance, slot: this.slot }, `espf run: instance ${opts.instance} streaming slot ${this.slot}`);
        },
        isIdle: () => this.tracker.unsettled === 0,
        onDisconnected: () => {
          if (this.streaming) opts.observe?.streaming?.(false);
          this.streaming = false;
        },
      },
    });
  }

  get isStreaming(): boolean { return this.streaming; }
  get durableLsn(): bigint { return this.tracker.durableLsn; }
  get httpHandlers(): ReadonlyMap<string, HttpHandler> { return this.http; }
  get dispatcherRunners(): ReadonlyMap<string, DispatcherRunner> { return this.dispatchers; }
  get resultsWriter(): ResultsWriter { return this.writer; }

  async start(): Promise<void> {
    const { db, instance } = this.opts;
    this.config = await loadConfig(db, instance);
    this.syncHandlers();
    // Resume what a previous run left waiting, before anything new.
    const rows: WaitingRow[] = await db.query(sql`SELECT * FROM espf.waiting_deliveries(${this.httpHandlerNames()})`);
    for (const r of rows) this.http.get(r.handler)?.enqueue(itemFromRow(r));
    if (rows.length) this.opts.log.info({ resumed: rows.length }, 'resumed waiting deliveries');
    // Events up to this position may already have outcomes: a replay skips them.
    const [h] = await db.query(sql`SELECT max(commit_lsn)::text AS lsn FROM espf.event_deliveries WHERE instance = ${instance}`);
    this.replayHorizon = h?.lsn ? parseLsn(h.lsn) : 0n;
    this.stream.start();
    this.timers.push(setInterval(() => void this.reloadConfig(), this.opts.configPollMs ?? 1000));
    this.timers.push(setInterval(() => void this.heartbeat(), this.opts.heartbeatMs ?? 10_000));
  }

  private async reloadConfig(): Promise<void> {
    if (this.reloading) return; // a slow database: never two reloads at once
    this.reloading = true;
    try {
      this.config = await loadConfig(this.opts.db, this.opts.instance);
      this.syncHandlers();
      for (const h of this.http.values()) h.reconfigure();
      await this.takeRequeued();
    } catch (err) {
      this.onDbError(err);
      this.opts.log.warn({ err: oneLine(err) }, 'reading configuration failed; keeping the last one');
    } finally {
      this.reloading = false;
    }
  }

  /** The http handlers this instance serves, enabled or not. */
  private httpHandlerNames(): string[] {
    return [...this.config.handlers.values()].filter((h) => h.kind === 'http').map((h) => h.name);
  }

  /** Deliveries put back in the queue (espf resend, reclaim) while we run. */
  private async takeRequeued(): Promise<void> {
    const mine = this.httpHandlerNames();
    if (mine.length === 0) return;
    const rows: WaitingRow[] = await this.opts.db.query(sql`SELECT * FROM espf.take_requeued(${mine})`);
    for (const r of rows) {
      const h = this.http.get(r.handler);
      if (h && !h.holds(r.i_event)) h.enqueue(itemFromRow(r));
    }
    if (rows.length) this.opts.log.info({ requeued: rows.length }, 'took requeued deliveries');
  }

  private async heartbeat(): Promise<void> {
    // A message through the slot: when nothing is in flight it lets the slot advance.
    await this.opts.db.query(sql`SELECT pg_logical_emit_message(false, ${HEARTBEAT_PREFIX}, ${this.opts.instance})`).catch((err) => this.onDbError(err));
  }

  private syncHandlers(): void {
    for (const h of this.config.handlers.values()) {
      if (h.kind === 'http' && !this.http.has(h.name)) {
        this.http.set(h.name, new HttpHandler(h.name, {
          instance: this.opts.instance, writer: this.writer, plog: this.opts.plog, log: this.opts.log,
          config: () => this.config.handlers.get(h.name),
          settled: (item) => this.settle(item),
          observe: this.opts.observe?.attempt,
          outcome: this.opts.observe?.outcome,
        }));
      } else if (h.kind === 'dispatcher' && !this.dispatchers.has(h.name)) {
        this.dispatchers.set(h.name, new DispatcherRunner(h.name, this.opts.db, this.opts.instance, this.opts.log, (item) => this.settle(item), this.opts.observe?.dispatched, (err) => this.onDbError(err)));
      }
    }
  }

  /**
   * The database went away (restart, failover): drop the replication
   * connection too, or the server's shutdown waits for it; we reconnect and
   * resume from the last durable position.
   */
  private onDbError(err: unknown): void {
    if (!isConnectionError(err) || Date.now() - this.lastReconnect < 2000) return;
    this.lastReconnect = Date.now();
    this.stream.reconnect();
  }

  private settle(item: Item): void {
    const t = item.ticket;
    if (!t) return;
    item.ticket = null;
    this.unsettledItems--;
    this.tracker.release(t);
    if (this.resumeWaiters.length && this.unsettledItems < (this.opts.maxUnsettled ?? 10_000) / 2) {
      for (const f of this.resumeWaiters.splice(0)) f();
    }
  }

  private async onTransaction(tx: StreamTransaction): Promise<void> {
    if (this.stopped) return new Promise(() => undefined); // hold the stream: nothing new after stop
    // After a reconnect the server replays from the last acknowledged position:
    // transactions already handed out are held (or settled) here; skip them.
    if (tx.endLsn <= this.lastHandedOut) return;
    this.lastHandedOut = tx.endLsn;
    this.opts.observe?.captured?.(tx);
    const ticket = this.tracker.open(tx.endLsn);
    let skip: Set<string> | undefined;
    if (tx.endLsn <= this.replayHorizon && tx.events.length > 0) skip = await this.alreadyRecorded(tx.events);
    for (const e of tx.events) {
      for (const h of this.config.handlersFor(e.event_type)) {
        if (skip?.has(`${e.i_event}:${h.name}`)) continue;
        const item = newItem(e, h, tx);
        item.ticket = ticket;
        this.tracker.hold(ticket);
        this.unsettledItems++;
        if (h.kind === 'http') this.http.get(h.name)?.enqueue(item);
        else this.dispatchers.get(h.name)?.enqueue(item);
      }
    }
    this.tracker.release(ticket); // handed out
    if (this.unsettledItems >= (this.opts.maxUnsettled ?? 10_000)) {
      await new Promise<void>((resolve) => this.resumeWaiters.push(resolve));
    }
  }

  private async alreadyRecorded(events: readonly StreamEvent[]): Promise<Set<string>> {
    const rows: { i_event: number; handler: string }[] = await this.opts.db.query(sql`
      SELECT i_event, handler FROM espf.event_deliveries WHERE i_event = ANY(${events.map((e) => e.i_event)}::bigint[])`);
    return new Set(rows.map((r) => `${r.i_event}:${r.handler}`));
  }

  /**
   * Graceful stop: no new events; requests on the wire finish (at most
   * max_wait_time); what still waits is recorded; the slot is acknowledged.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    const maxWaitMs = Math.min(...[...this.config.handlers.values()].map((h) => (h.http?.max_wait_time ?? 600) * 1000), 600_000);
    await Promise.all([
      ...[...this.http.values()].map((h) => h.stop(maxWaitMs)),
      ...[...this.dispatchers.values()].map((d) => d.stop(maxWaitMs)),
    ]);
    await Promise.race([this.writer.drain(), new Promise((r) => setTimeout(r, 5000).unref())]);
    await this.stream.stop();
    for (const f of this.resumeWaiters.splice(0)) f();
  }
}

interface WaitingRow {
  i_event: number; handler: string; state: string; event_type: string; variables: Record<string, unknown>;
  source_i_event: number | null; commit_lsn: string | null; attempts: number; urls_done: number;
  next_attempt_at: Date | null; committed_at: Date | null; first_attempt_at: Date | null;
}

function newItem(e: StreamEvent, h: HandlerConfig, tx: StreamTransaction): Item {
  return {
    event: e, handler: h.name, orderKey: orderKey(e), iAccount: accountOf(e),
    commitLsn: tx.endLsn, committedAt: tx.commitTime,
    attempts: 0, urlsDone: 0, firstAttemptAt: null, nextAttemptAt: null, ticket: null,
  };
}

function itemFromRow(r: WaitingRow): Item {
  const event: StreamEvent = { i_event: r.i_event, event_type: r.event_type, variables: r.variables, source_i_event: r.source_i_event };
  return {
    event, handler: r.handler, orderKey: orderKey(event), iAccount: accountOf(event),
    commitLsn: r.commit_lsn ? parseLsn(r.commit_lsn) : null, committedAt: r.committed_at,
    attempts: r.attempts, urlsDone: r.urls_done, firstAttemptAt: r.first_attempt_at,
    nextAttemptAt: r.state === 'RETRY' ? r.next_attempt_at : null, ticket: null,
  };
}
