import { LogicalReplicationService } from 'pg-logical-replication';
import { Backoff } from '../backoff.ts';
import { locatePrimary, type Db } from '../db/connect.ts';
import { createSlot, dropLostSlot, emitMessage, publicationExists, PUBLICATION, refuseOtherDatabase, slotState } from '../db/replication.ts';
import { EspfError, SQLSTATE, isConnectionError, oneLine, sqlState } from '../errors.ts';
import { redactUrl } from '../security/redact.ts';
import type { Logger } from '../log/logger.ts';
import { acknowledgeUpTo, OutboxPgoutput } from './library.ts';
import { parseLsn } from './lsn.ts';
import { shardPublication, type Shard } from '../db/shards.ts';

export const HEARTBEAT_PREFIX = 'espf_heartbeat';
/** The prefix of the transactional message a configuration change commits with (sql/042_config_stream.sql). */
export const CONFIG_PREFIX = 'espf_config';

/** One row of espf.events as it comes out of the stream. */
export interface StreamEvent {
  readonly i_event: number;
  readonly event_type: string;
  readonly variables: Record<string, unknown>;
  readonly source_i_event: number | null;
  /** espf.events.target_handler: the one handler a targeted backfill wrote it for; null or absent: every subscribed handler. */
  readonly target_handler?: string | null;
  /**
   * Its created_at (to the millisecond): with i_event, its identity, which the
   * record stage checks (an i_event may be handed out again after a failover).
   * Absent for an event read back from a delivery row.
   */
  readonly created_at?: Date;
}

/** A committed transaction of the stream, as its BEGIN message names it. */
export interface StreamTxHead {
  /**
   * Where its commit record starts (pgoutput's BEGIN carries it): names the
   * transaction, in commit order, before its events arrive. It is below the
   * commit's end and at or above the end of every transaction committed before.
   */
  readonly commitLsn: bigint;
  readonly commitTime: Date;
}

/**
 * A part of a committed transaction: at most `partSize` of its events, in
 * insertion order, handed on as they arrive, so that no transaction is ever
 * held in memory whole (docs/operations.md, "Memory"). The last part carries
 * the end of the commit record; a transaction of few events is one part.
 */
export interface StreamPart {
  readonly tx: StreamTxHead;
  /** How many events of the transaction came in earlier parts. */
  readonly offset: number;
  readonly events: StreamEvent[];
  /** On the last part: the commit's end (acknowledging it means "done with this transaction"); null before. */
  readonly endLsn: bigint | null;
  /**
   * A configuration change the transaction committed (the content of its
   * espf_config message): in force before this part's events, after the
   * events of earlier parts (src/config/watch.ts reads it).
   */
  readonly config?: Uint8Array;
}

/** Events of one transaction handed on at once at most, by default. */
export const DEFAULT_PART_SIZE = 1000;

export interface StreamHandlers {
  /** Called in stream order, part after part; may return a promise to hold the stream (back-pressure). */
  onPart(part: StreamPart): void | Promise<void> | undefined;
  /** A heartbeat message (nothing to deliver) at this position. */
  onHeartbeat(lsn: bigint): void;
  /**
   * A keepalive from the server: it has sent everything up to `lsn`, and the
   * stream has handed on every message that came before it (nothing of it waits
   * here). The acknowledge stage decides whether that position is durable.
   */
  onKeepalive(lsn: bigint): void;
  onStreaming(): void;
  onDisconnected(err: unknown): void;
  /**
   * The slot is missing when the stream (re)connects: made anew it would
   * carry only what commits from now on. Must make the slot and catch up what
   * happened in between before the stream goes on (src/run/sender.ts).
   */
  onSlotMissing(): Promise<void>;
}

export interface ReplicationOptions {
  readonly url: string;
  /** The slot's name (the sender knows it once it has started: src/run/shard.ts shardSlot). */
  readonly slot: () => string;
  /** The shard of the instance: its events come through the shard's publication (a row filter). */
  readonly shard: Shard;
  readonly instance: string;
  readonly db: Db;
  readonly log: Logger;
  readonly handlers: StreamHandlers;
  readonly maxBackoffMs?: number;
  /** How often a heartbeat message goes through the slot (default 10 s): an idle slot still advances. */
  readonly heartbeatMs?: number;
  /** Events of one transaction handed on at once at most (default DEFAULT_PART_SIZE). */
  readonly partSize?: number;
}

/**
 * The stream stage: espf.events from the slot with pgoutput, committed
 * transactions in commit order, each in parts of at most `partSize` events
 * (a transaction of a million events is never in memory at once),
 * reconnecting with capped backoff. It sends the server only the position
 * `acknowledge()` is given (by the acknowledge stage, the only one that
 * compares positions): the library's own timer-based acknowledgement would
 * confirm WAL before its outcomes are durable, so it is off.
 */
export class ReplicationStream {
  private service?: LogicalReplicationService;
  private stopped = false;
  /** The position the acknowledge stage gave last: what the server is told. */
  private given = 0n;
  /** A message handed on is still being handled (the library waits for it before the next). */
  private busy = false;
  /** Ends the current connection (src: streamOnce): the one way to reconnect. */
  private drop?: (err: Error) => void;
  private current?: { tx: StreamTxHead; offset: number; events: StreamEvent[]; config?: Uint8Array };
  private readonly opts: ReplicationOptions;
  private loop?: Promise<void>;
  private readonly backoff: Backoff;
  private heartbeatTimer?: NodeJS.Timeout;
  private lastReconnect = 0;
  private warnedNoFailover = false;
  private streamUrl?: string;
  private publication = PUBLICATION;
  private slotLost = false;

  constructor(opts: ReplicationOptions) {
    this.opts = opts;
    this.backoff = new Backoff(250, opts.maxBackoffMs ?? 5000);
  }

  /** Creates the slot if missing; the publication must exist (espf migrate defines it). */
  async prepare(): Promise<void> {
    const { db } = this.opts;
    const slot = this.opts.slot();
    // The publication before the slot: a slot decodes with the catalog of each WAL position.
    if (this.opts.shard.n > 1) {
      this.publication = await shardPublication(db, this.opts.shard);
    } else if (!(await publicationExists(db))) {
      throw new EspfError('ESPF_NOT_MIGRATED', `publication ${PUBLICATION} is missing: run espf migrate (sql/040_publication.sql defines it)`);
    }
    // failover (PostgreSQL 17+): standbys with sync_replication_slots keep a
    // copy of the slot, so a promoted standby goes on from it (docs/operations.md).
    const s = await slotState(db, slot);
    refuseOtherDatabase(slot, s);
    if (s.lost && await dropLostSlot(db, slot)) {
      this.opts.log.warn({ slot }, `replication slot ${slot} was invalidated (wal_status lost): dropped it to make it anew`);
    }
    if (!s.present) {
      try {
        await createSlot(db, slot, s.failoverSlots);
        this.opts.log.info({ slot, failover: s.failoverSlots }, 'created replication slot');
      } catch (err) {
        if (sqlState(err) !== SQLSTATE.duplicateObject) throw err;
      }
    } else if (s.failoverSlots && s.failover === false && !this.warnedNoFailover) {
      this.warnedNoFailover = true;
      this.opts.log.warn({ slot }, `slot ${slot} is not a failover slot: a promoted standby will not have it (docs/operations.md, "Failover")`);
    }
  }

  start(): void {
    this.loop = this.run();
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), this.opts.heartbeatMs ?? 10_000);
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      try {
        // Never a fresh slot in silence: what committed while there was none is
        // caught up first (again after a failed attempt, even if it made the slot).
        if (this.slotLost || !(await slotState(this.opts.db, this.opts.slot())).present) {
          this.slotLost = true;
          await this.opts.handlers.onSlotMissing();
          this.slotLost = false;
        }
        await this.prepare();
        if (this.stopped) break;
        await this.streamOnce();
        this.backoff.succeeded();
      } catch (err) {
        if (this.stopped) break;
        this.opts.handlers.onDisconnected(err);
        const busy = sqlState(err) === SQLSTATE.objectInUse;
        this.opts.log[busy ? 'debug' : 'warn']({ err: oneLine(err), retryInMs: this.backoff.nextMs }, busy ? 'slot is in use by another instance; waiting' : 'replication stream lost; reconnecting');
      }
      if (this.stopped) break;
      await this.backoff.wait();
    }
  }

  /**
   * A message through the slot: when nothing is in flight it lets the slot
   * advance. The durable position is also reported: while the stream is held
   * (a large transaction waits for its outcomes) keepalives are not read, and
   * the server would end the connection after wal_sender_timeout without a reply.
   */
  private async heartbeat(): Promise<void> {
    if (this.service) void acknowledgeUpTo(this.service, this.given).catch(() => false);
    await emitMessage(this.opts.db, HEARTBEAT_PREFIX, this.opts.instance).catch((err) => this.connectionLost(err));
  }

  private async streamOnce(): Promise<void> {
    // DATABASE_URL may list several hosts: stream from the one that is the primary now.
    const url = await locatePrimary(this.opts.url);
    if (this.streamUrl !== undefined && url !== this.streamUrl) this.opts.log.warn({ primary: redactUrl(url) }, `the primary has moved: streaming from ${redactUrl(url)}`);
    this.streamUrl = url;
    return new Promise<void>((resolve, reject) => {
      const service = new LogicalReplicationService(
        { connectionString: url, application_name: `espf ${this.opts.slot()}` },
        { acknowledge: { auto: false, timeoutSeconds: 0 }, flowControl: { enabled: true } },
      );
      this.service = service;
      this.current = undefined;
      let settled = false;
      const finish = (err?: unknown) => {
        if (settled) return;
        settled = true;
        this.service = undefined;
        this.drop = undefined;
        this.busy = false;
        service.destroy().catch(() => undefined);
        if (err && !this.stopped) reject(err); else resolve();
      };
      this.drop = (err) => finish(err);
      service.on('error', (err) => finish(err));
      service.on('start', () => {
        this.opts.handlers.onStreaming();
        // Report where we stand at once, so the server knows we are alive;
        // a heartbeat message tells us when the stream has passed what it replays.
        void acknowledgeUpTo(service, this.given);
        void this.heartbeat();
      });
      service.on('heartbeat', (lsn: string, _ts: number, shouldRespond: boolean) => {
        // Under flow control the library hands messages on one at a time and
        // emits keepalives at once, so a keepalive may overtake data it has
        // queued. Once the current macrotask is over, the library has handed on
        // every queued message whose handling did not wait (it goes on in
        // microtasks); if none is being handled now, nothing received before
        // the keepalive waits (test/unit/replication-library.test.ts pins this).
        setImmediate(() => {
          if (this.service !== service) return;
          if (!this.busy && this.current === undefined) this.opts.handlers.onKeepalive(parseLsn(lsn));
          if (shouldRespond) void acknowledgeUpTo(service, this.given);
        });
      });
      service.on('data', (lsn: string, msg: PgMessage) => {
        const r = this.onMessage(lsn, msg);
        if (!r) return undefined;
        this.busy = true;
        return r.finally(() => { this.busy = false; });
      });
      const plugin = new OutboxPgoutput({ protoVersion: 1, publicationNames: [this.publication], messages: true });
      service.subscribe(plugin, this.opts.slot()).then(
        () => finish(this.stopped ? undefined : new Error('replication stream ended')),
        (err) => finish(err),
      );
    });
  }

  private onMessage(lsn: string, msg: PgMessage): void | Promise<void> {
    switch (msg.tag) {
      case 'begin':
        if (!msg.commitLsn) throw new EspfError('ESPF_STREAM_PROTOCOL', 'a BEGIN message without the position of its commit');
        this.current = { tx: { commitLsn: parseLsn(msg.commitLsn), commitTime: new Date(Number(msg.commitTime) / 1000) }, offset: 0, events: [] };
        return;
      case 'insert': {
        const c = this.current;
        if (msg.relation.schema !== 'espf' || msg.relation.name !== 'events' || !c) return;
        const row = msg.new;
        const i_event = Number(row.i_event);
        const event_type = row.event_type as string;
        const variables = row.variables as Record<string, unknown>;
        const source_i_event = row.source_i_event == null ? null : Number(row.source_i_event);
        const target_handler = (row.target_handler as string | null | undefined) ?? null;
        // One literal per shape (no spread of a temporary object per event).
        c.events.push(row.created_at instanceof Date
          ? { i_event, event_type, variables, source_i_event, target_handler, created_at: row.created_at }
          : { i_event, event_type, variables, source_i_event, target_handler });
        if (c.events.length < (this.opts.partSize ?? DEFAULT_PART_SIZE)) return;
        // A large transaction: hand on what came so far; the rest follows.
        return this.handOn(c);
      }
      case 'commit': {
        const c = this.current;
        this.current = undefined;
        if (!c || !msg.commitEndLsn) return;
        return this.opts.handlers.onPart({ tx: c.tx, offset: c.offset, events: c.events, endLsn: parseLsn(msg.commitEndLsn), ...(c.config ? { config: c.config } : {}) });
      }
      case 'message': {
        if (msg.prefix === HEARTBEAT_PREFIX && !msg.transactional) this.opts.handlers.onHeartbeat(parseLsn(msg.messageLsn ?? lsn));
        const c = this.current;
        if (msg.prefix !== CONFIG_PREFIX || !msg.transactional || !c) return;
        // A configuration change at this position: the events before it go on first, with the configuration before it.
        const before = c.events.length > 0 || c.config ? this.handOn(c) : undefined;
        c.config = msg.content;
        return before;
      }
      default:
        return;
    }
  }

  /** Hands on the part gathered so far of the current transaction (not its last). */
  private handOn(c: NonNullable<ReplicationStream['current']>): void | Promise<void> | undefined {
    const part: StreamPart = { tx: c.tx, offset: c.offset, events: c.events, endLsn: null, ...(c.config ? { config: c.config } : {}) };
    c.offset += c.events.length;
    c.events = [];
    c.config = undefined;
    return this.opts.handlers.onPart(part);
  }

  /** Tell the server that everything up to `lsn` is durable (the acknowledge stage gives it). */
  acknowledge(lsn: bigint): void {
    this.given = lsn;
    if (this.service) void acknowledgeUpTo(this.service, lsn);
  }

  /**
   * A statement on the pool failed. When the database went away (restart,
   * failover) the replication connection is dropped too, or the server's
   * shutdown waits for it; we reconnect and resume from the last durable
   * position. At most once per 2 s. The one path database errors take to a
   * reconnect: every stage reports them here (src/run/sender.ts).
   */
  connectionLost(err: unknown): void {
    if (!isConnectionError(err) || Date.now() - this.lastReconnect < 2000) return;
    this.lastReconnect = Date.now();
    if (!this.drop) return;
    this.opts.log.info('closing the replication connection; will reconnect');
    this.drop(new EspfError('ESPF_RECONNECT', 'reconnect requested: the database connection was lost'));
  }

  /** Stops streaming; resolves when the connection is closed. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.heartbeatTimer);
    this.backoff.interrupt();
    // Send the final position before closing.
    if (this.service) await acknowledgeUpTo(this.service, this.given).catch(() => false);
    await this.service?.destroy().catch(() => undefined);
    await this.loop;
  }
}

type PgMessage =
  | { tag: 'begin'; commitLsn: string | null; commitTime: bigint }
  | { tag: 'insert'; relation: { schema: string; name: string }; new: Record<string, unknown> }
  | { tag: 'commit'; commitLsn: string | null; commitEndLsn: string | null; commitTime: bigint }
  | { tag: 'message'; transactional: boolean; messageLsn: string | null; prefix: string; content: Uint8Array }
  | { tag: 'relation' | 'type' | 'origin' | 'delete' | 'update' | 'truncate' };
