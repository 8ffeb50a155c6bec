import { LogicalReplicationService, PgoutputPlugin } from 'pg-logical-replication';
import { sql } from '@databases/pg';
import type { Db } from '../db/connect.ts';
import { SQLSTATE, oneLine, sqlState } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import { formatLsn, parseLsn } from './lsn.ts';

export const PUBLICATION = 'espf_events';
export const HEARTBEAT_PREFIX = 'espf_heartbeat';

/** One row of espf.events as it comes out of the stream. */
export interface StreamEvent {
  readonly i_event: number;
  readonly event_type: string;
  readonly variables: Record<string, unknown>;
  readonly source_i_event: number | null;
}

/** A committed transaction of the stream: its events in insertion order. */
export interface StreamTransaction {
  readonly endLsn: bigint;          // the commit's end: acknowledging it means "done with this transaction"
  readonly commitTime: Date;
  readonly events: StreamEvent[];
}

export interface StreamHandlers {
  /** Called in commit order; may return a promise to hold the stream (back-pressure). */
  onTransaction(tx: StreamTransaction): void | Promise<void>;
  /** A heartbeat message (nothing to deliver) at this position. */
  onHeartbeat(lsn: bigint): void;
  onStreaming(): void;
  onDisconnected(err: unknown): void;
  /** True when every transaction handed out so far is settled (nothing holds the slot). */
  isIdle(): boolean;
}

export interface ReplicationOptions {
  readonly url: string;
  readonly slot: string;
  readonly db: Db;
  readonly log: Logger;
  readonly handlers: StreamHandlers;
  readonly maxBackoffMs?: number;
}

/**
 * Streams espf.events from the slot with pgoutput, reconnecting with capped
 * backoff. Acknowledges only what `acknowledge()` is given: the library's own
 * timer-based acknowledgement is off (see stack notes).
 */
export class ReplicationStream {
  private service?: LogicalReplicationService;
  private stopped = false;
  private durable = 0n;
  private current?: { commitTime: Date; events: StreamEvent[] };
  private readonly opts: ReplicationOptions;
  private loop?: Promise<void>;
  private wake?: () => void;

  constructor(opts: ReplicationOptions) {
    this.opts = opts;
  }

  /** Creates the publication and the slot if missing. */
  async prepare(): Promise<void> {
    const { db, slot } = this.opts;
    const [pub] = await db.query(sql`SELECT 1 FROM pg_publication WHERE pubname = ${PUBLICATION}`);
    if (!pub) {
      try {
        await db.query(sql`CREATE PUBLICATION ${sql.ident(PUBLICATION)} FOR TABLE espf.events WITH (publish = 'insert')`);
      } catch (err) {
        if (sqlState(err) !== SQLSTATE.duplicateObject) throw err;
      }
    }
    const [s] = await db.query(sql`SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = ${slot}`);
    if (!s) {
      try {
        await db.query(sql`SELECT pg_create_logical_replication_slot(${slot}, 'pgoutput')`);
        this.opts.log.info({ slot }, 'created replication slot');
      } catch (err) {
        if (sqlState(err) !== SQLSTATE.duplicateObject) throw err;
      }
    }
  }

  start(): void {
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    let backoff = 250;
    const max = this.opts.maxBackoffMs ?? 5000;
    while (!this.stopped) {
      try {
        await this.prepare();
        await this.streamOnce();
        backoff = 250;
      } catch (err) {
        if (this.stopped) break;
        this.opts.handlers.onDisconnected(err);
        const busy = sqlState(err) === SQLSTATE.objectInUse;
        this.opts.log[busy ? 'debug' : 'warn']({ err: oneLine(err), retryInMs: backoff }, busy ? 'slot is in use by another instance; waiting' : 'replication stream lost; reconnecting');
      }
      if (this.stopped) break;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, backoff);
        this.wake = () => { clearTimeout(t); resolve(); };
      });
      backoff = Math.min(max, backoff * 2);
    }
  }

  private streamOnce(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const service = new LogicalReplicationService(
        { connectionString: this.opts.url, application_name: `espf ${this.opts.slot}` },
        { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: true } },
      );
      this.service = service;
      this.current = undefined;
      let settled = false;
      const finish = (err?: unknown) => {
        if (settled) return;
        settled = true;
        this.service = undefined;
        service.destroy().catch(() => undefined);
        if (err && !this.stopped) reject(err); else resolve();
      };
      service.on('error', (err) => finish(err));
      service.on('start', () => {
        this.opts.handlers.onStreaming();
        // Report where we stand at once, so the server knows we are alive.
        void service.acknowledge(this.ackPosition());
      });
      service.on('heartbeat', (lsn: string, _ts: number, shouldRespond: boolean) => {
        // A keepalive carries the position the server has sent up to. When every
        // message received before it is processed and settled, that position is
        // durable too: acknowledging it lets an idle slot advance and lets a
        // server shutdown (which waits for the flush position) proceed.
        if (this.current === undefined && queueEmpty(service) && this.opts.handlers.isIdle()) {
          const pos = parseLsn(lsn);
          if (pos > this.durable) this.durable = pos;
        }
        if (shouldRespond) void service.acknowledge(this.ackPosition());
      });
      service.on('data', (lsn: string, msg: PgMessage) => this.onMessage(lsn, msg));
      const plugin = new PgoutputPlugin({ protoVersion: 1, publicationNames: [PUBLICATION], messages: true });
      service.subscribe(plugin, this.opts.slot).then(
        () => finish(this.stopped ? undefined : new Error('replication stream ended')),
        (err) => finish(err),
      );
    });
  }

  private onMessage(lsn: string, msg: PgMessage): void | Promise<void> {
    switch (msg.tag) {
      case 'begin':
        this.current = { commitTime: new Date(Number(msg.commitTime) / 1000), events: [] };
        return;
      case 'insert': {
        if (msg.relation.schema !== 'espf' || msg.relation.name !== 'events' || !this.current) return;
        const row = msg.new;
        this.current.events.push({
          i_event: Number(row.i_event),
          event_type: row.event_type as string,
          variables: row.variables as Record<string, unknown>,
          source_i_event: row.source_i_event == null ? null : Number(row.source_i_event),
        });
        return;
      }
      case 'commit': {
        const tx = this.current;
        this.current = undefined;
        if (!tx || !msg.commitEndLsn) return;
        return this.opts.handlers.onTransaction({ endLsn: parseLsn(msg.commitEndLsn), commitTime: tx.commitTime, events: tx.events });
      }
      case 'message':
        if (msg.prefix === HEARTBEAT_PREFIX && !msg.transactional) this.opts.handlers.onHeartbeat(parseLsn(msg.messageLsn ?? lsn));
        return;
      default:
        return;
    }
  }

  /** The library reports `lsn + 1` as flushed: give it one less (stack notes, pitfall 4). */
  private ackPosition(): string {
    return formatLsn(this.durable > 0n ? this.durable - 1n : 0n);
  }

  /** Everything up to `lsn` is durable: tell the server. */
  acknowledge(lsn: bigint): void {
    if (lsn <= this.durable) return;
    this.durable = lsn;
    void this.service?.acknowledge(this.ackPosition());
  }

  /**
   * Drops the replication connection and reconnects (from the last
   * acknowledged position). Used when the database says it is going away: the
   * server's shutdown waits for its WAL senders.
   */
  reconnect(): void {
    const s = this.service;
    if (!s) return;
    this.opts.log.info('closing the replication connection; will reconnect');
    s.emit('error', Object.assign(new Error('reconnect requested: the database connection was lost'), { code: 'ESPF_RECONNECT' }));
  }

  /** Stops streaming; resolves when the connection is closed. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    // Send the final position before closing.
    if (this.service) await this.service.acknowledge(this.ackPosition()).catch(() => false);
    await this.service?.destroy().catch(() => undefined);
    await this.loop;
  }
}

/** The library queues messages under flow control; a keepalive may overtake them. */
function queueEmpty(service: LogicalReplicationService): boolean {
  const internal = service as unknown as { _messageQueue?: unknown[]; _processing?: boolean };
  return (internal._messageQueue?.length ?? 0) === 0 && !internal._processing;
}

type PgMessage =
  | { tag: 'begin'; commitLsn: string | null; commitTime: bigint }
  | { tag: 'insert'; relation: { schema: string; name: string }; new: Record<string, unknown> }
  | { tag: 'commit'; commitLsn: string | null; commitEndLsn: string | null; commitTime: bigint }
  | { tag: 'message'; transactional: boolean; messageLsn: string | null; prefix: string; content: Uint8Array }
  | { tag: 'relation' | 'type' | 'origin' | 'delete' | 'update' | 'truncate' };
