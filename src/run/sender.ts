import { DEFAULT_STOP_TIMEOUT_S } from '../config/env.ts';
import type { ConfigSnapshot } from '../config/snapshot.ts';
import { ConfigWatcher } from '../config/watch.ts';
import type { Db } from '../db/connect.ts';
import { downTargets, lastRecordedLsn, noteTargetState } from '../db/deliveries.ts';
import type { DispatcherRunner } from '../delivery/dispatcher-runner.ts';
import type { HttpHandler } from '../delivery/http-handler.ts';
import type { TargetState } from '../delivery/targets.ts';
import { EspfError, oneLine } from '../errors.ts';
import type { DeliveryObserver } from '../delivery/observer.ts';
import { ResultsWriter } from '../delivery/results-writer.ts';
import type { Logger, ProvisioningLog } from '../log/logger.ts';
import { Acknowledger } from '../pipeline/acknowledge.ts';
import { Deliverers } from '../pipeline/deliverers.ts';
import { Router } from '../pipeline/route.ts';
import { WaitingDeliveries } from '../pipeline/waiting.ts';
import { parseLsn } from '../stream/lsn.ts';
import { ReplicationStream, type StreamEvent } from '../stream/replication.ts';
import { classicSlotName, shardSlot, shardText, WHOLE, type Shard } from './shard.ts';
import { locatePrimary } from '../db/connect.ts';
import { hostLabel } from '../db/hosts.ts';
import { instanceShards } from '../db/shards.ts';
import { catchUp, type CatchUpResult } from './catch-up.ts';

/** How long a recovery of a missing slot waits for the outcomes already reported to be recorded. */
const DRAIN_MS = 30_000;

export interface SenderOptions {
  readonly db: Db;
  readonly url: string;
  readonly instance: string;
  /**
   * The slot's name, when the caller has it (src/run/shard.ts shardSlot);
   * otherwise the sender asks the database as it starts.
   */
  readonly slot?: string;
  /** The shard of the instance this process serves (default: the whole instance). */
  readonly shard?: Shard;
  readonly log: Logger;
  readonly plog: ProvisioningLog;
  readonly pollMs?: number;            // default 1000: requeued deliveries are taken within 2 s
  readonly heartbeatMs?: number;       // default 10000: an idle slot still advances
  readonly maxUnsettled?: number;      // items not yet durable before the stream is held (back-pressure)
  readonly window?: number;            // deliveries of one http handler held in memory at most (default 12,000)
  readonly observe?: SenderObserver;
}

/** How a stop ended. */
export interface StopResult {
  /** Outcomes that could not be recorded (the database did not answer): not acknowledged, replayed at the next start. */
  readonly unrecorded: number;
}

/** Hooks for metrics: the deliver stage's parts publish theirs (src/delivery/observer.ts), the sender these. */
export interface SenderObserver extends Partial<DeliveryObserver> {
  /** Events arrived from the stream (before they are handed out), each once. */
  captured?(events: readonly StreamEvent[]): void;
  streaming?(on: boolean): void;
  /** `events` events no slot had carried were caught up for `handler`, at start or after the slot was made anew (src/run/catch-up.ts). */
  caughtUp?(handler: string, events: number): void;
  /** The slot was missing when the stream reconnected: it was made anew and `events` events were caught up. */
  slotRecreated?(slot: string, events: number): void;
}

/**
 * One `espf run` instance: the pipeline of stages, wired here and nowhere
 * else (docs/architecture.md draws it):
 *
 *   stream → route → deliver → record → acknowledge → (stream)
 *                       ↑
 *             waiting deliveries (resume at start, requeued while running)
 *
 * It streams espf.events from its slot (espf_<instance>), hands each event to this
 * instance's enabled, subscribed handlers, and acknowledges WAL only past
 * transactions whose every outcome is durable.
 */
export class Sender {
  private slotName: string;
  readonly shard: Shard;
  private readonly config: ConfigWatcher;
  private readonly writer: ResultsWriter;
  private readonly deliverers: Deliverers;
  private readonly ack: Acknowledger;
  private readonly router: Router;
  private readonly waiting: WaitingDeliveries;
  private readonly stream: ReplicationStream;
  private streaming = false;
  private stopped = false;
  private targetWrites: Promise<void> = Promise.resolve();

  constructor(private readonly opts: SenderOptions) {
    const { db, instance, log, observe } = opts;
    const shard = opts.shard ?? WHOLE;
    this.shard = shard;
    // Until start() has the database's name for it (a second database on the server has another).
    this.slotName = opts.slot ?? classicSlotName(instance, shard);
    const onDbError = (err: unknown) => this.stream.connectionLost(err);
    this.config = new ConfigWatcher({ db, instance, changed: (c) => this.deliverers.sync(c) });
    this.ack = new Acknowledger((lsn) => this.stream.acknowledge(lsn), opts.maxUnsettled);
    this.writer = new ResultsWriter(db, instance, log, (items) => this.ack.durable(items), onDbError);
    this.deliverers = new Deliverers({
      db, instance, log, plog: opts.plog, onDbError,
      config: () => this.config.current,
      record: (item, outcome) => this.writer.record(item, outcome),
      dispatched: (items) => this.ack.durable(items),
      observer: observe,
      window: (name) => this.waiting.window(name),
      target: (h, state) => this.noteTarget(h, state),
    });
    this.router = new Router({
      db, ack: this.ack, config: () => this.config.current, captured: observe?.captured,
      configure: (content) => {
        if (this.config.apply(content)) log.info({ instance, version: this.config.current.version }, `configuration version ${this.config.current.version} in force`);
      },
      deliver: (h, item) => this.deliverers.deliver(h, item),
    });
    this.waiting = new WaitingDeliveries({
      db, log, onDbError, window: opts.window,
      handlers: () => this.deliverers.httpHandlers(this.config.current), handler: (name) => this.deliverers.http.get(name), shard,
    });
    this.stream = new ReplicationStream({
      url: opts.url, slot: () => this.slotName, shard, instance, db, log, heartbeatMs: opts.heartbeatMs,
      handlers: {
        onPart: (part) => this.router.onPart(part),
        onHeartbeat: (lsn) => this.ack.passThrough(lsn),
        onKeepalive: (lsn) => this.ack.keepalive(lsn),
        onStreaming: () => {
          this.streaming = true;
          observe?.streaming?.(true);
          log.info({ instance, slot: this.slot, ...(shard.n > 1 ? { shard: shard.k, shards: shard.n } : {}) },
            `espf run: instance ${instance}${shard.n > 1 ? ` shard ${shardText(shard)}` : ''} streaming slot ${this.slot}`);
        },
        onDisconnected: () => {
          if (this.streaming) observe?.streaming?.(false);
          this.streaming = false;
        },
        onSlotMissing: () => this.recoverSlot(),
      },
    });
  }

  /** The replication slot it streams: espf_<instance> unless that name is another database's (sql/015_shards.sql, "Slot names"). */
  get slot(): string { return this.slotName; }
  get isStreaming(): boolean { return this.streaming; }
  /** The configuration in force (read from the rows at start, then changed at each change's place in the stream). */
  get configuration(): ConfigSnapshot { return this.config.current; }
  get durableLsn(): bigint { return this.ack.durableLsn; }
  get httpHandlers(): ReadonlyMap<string, HttpHandler> { return this.deliverers.http; }
  get dispatcherRunners(): ReadonlyMap<string, DispatcherRunner> { return this.deliverers.dispatchers; }
  get resultsWriter(): ResultsWriter { return this.writer; }
  /** The enabled handlers this instance serves now. */
  get servedHandlers(): string[] { return [...this.config.current.handlers.values()].filter((h) => h.enabled).map((h) => h.name); }

  async start(): Promise<void> {
    const pollMs = this.opts.pollMs ?? 1000;
    if (this.opts.slot === undefined) this.slotName = await shardSlot(this.opts.db, this.opts.instance, this.shard);
    // Make the slot, then catch up what no slot carried (recorded as waiting rows, resumed just below).
    // A shard catches up the events of its shard only.
    const caught = await this.catchUp(true);
    // The slot exists: a configuration change this read does not see comes through it.
    await this.config.read();
    // A target that was down when the last run stopped is still probed, not flooded.
    for (const t of await downTargets(this.opts.db, this.config.current.httpHandlerNames)) {
      this.deliverers.http.get(t.handler)?.restoreDown(t.url, t.i_env, t.since, t.probes);
    }
    await this.waiting.resume();
    // Events up to this position may already have outcomes: a replay skips them.
    const lsn = await lastRecordedLsn(this.opts.db, this.opts.instance);
    if (lsn) this.ack.raiseReplayHorizon(parseLsn(lsn));
    // What the catch-up recorded may come through the slot too; when it recorded
    // nothing, what committed while espf was stopped is new, not a replay.
    if (caught.events > 0) this.ack.raiseReplayHorizon(caught.horizon);
    this.readPagesAfterReplay();
    this.stream.start();
    this.waiting.start(pollMs);
  }

  /**
   * The waiting deliveries are read once the stream has passed the replay
   * horizon and what the replay recorded is committed: a transaction
   * replayed after a crash may record deliveries behind rows that already
   * wait (the same commit position), and a page read before would pass them.
   * The stream sends a heartbeat message as it starts, so this is soon.
   */
  private readPagesAfterReplay(): void {
    void this.ack.pastReplay()
      .then(() => this.writer.committed())
      .then(() => this.waiting.release());
  }

  private catchUp(atStart: boolean): Promise<CatchUpResult> {
    return catchUp({
      db: this.opts.db, instance: this.opts.instance, shard: this.shard, slot: this.slot, prepareSlot: () => this.stream.prepare(), log: this.opts.log,
      observe: (handler, n) => this.opts.observe?.caughtUp?.(handler, n), logHandlers: atStart, slotLost: !atStart,
    });
  }

  /**
   * The stream reconnected (a failover, a lost connection) and the slot was
   * missing: a promoted standby without failover slots, a slot dropped by
   * hand or lost. A slot made anew carries only what commits from then on, so
   * before it streams (docs/operations.md, "Failover"):
   *  1. every http handler puts new deliveries behind the database and
   *     remembers what finishes, and the outcomes reported so far are
   *     committed: a delivery held in memory is known by the pages, one that
   *     finished has its row;
   *  2. the slot is made, then the outbox catch-up records what has no
   *     delivery row for the instance's handlers (as at start; a shard, for
   *     the events of its shard): what committed
   *     on the old primary and reached this one but was never streamed, and
   *     what was in flight and not recorded (sent again: a duplicate, never a
   *     loss);
   *  3. the acknowledge stage starts over on the new slot's positions (what the
   *     old slot admitted still settles but never advances the new one), with
   *     the replay horizon at the catch-up's position;
   *  4. the waiting deliveries are read again from the first row, so a
   *     caught-up event goes before any later event of its account.
   * Throws on failure; the stream tries again (the catch-up is owed until it succeeds).
   */
  private async recoverSlot(): Promise<void> {
    const { db, instance, log, url } = this.opts;
    const host = await locatePrimary(url).then(hostLabel, () => 'the database');
    const shards = await instanceShards(db, instance);
    if (shards !== this.shard.n) {
      // Not lost: retired by a change of the number of shards (espf shards switch drops the old slots).
      throw new EspfError('ESPF_SHARDS_CHANGED', `replication slot ${this.slot} is missing on ${host} and instance ${instance} now has ${shards} shard${shards === 1 ? '' : 's'} (espf.handlers.shards), not ${this.shard.n}: the slot is not made anew; stop this process and run the instance's current shards (README, "Shards")`);
    }
    log.warn({ instance, slot: this.slot, host }, `replication slot ${this.slot} is missing on ${host}: catching up from the outbox before streaming`);
    this.waiting.spillNew();
    if (!(await this.writer.drain(DRAIN_MS))) {
      log.warn({ instance, queued: this.writer.queued }, 'outcomes reported before the slot was found missing are not all recorded yet; catching up anyway (what has no row is sent again)');
    }
    const r = await this.catchUp(false);
    // A configuration change committed while there was no slot is in these rows.
    await this.config.read();
    this.ack.newSlot(r.horizon);
    await this.waiting.resume();
    this.readPagesAfterReplay();
    this.opts.observe?.slotRecreated?.(this.slot, r.events);
    const per = Object.entries(r.handlers).map(([h, n]) => `${h} ${n}`).join(', ');
    log.warn({ instance, slot: this.slot, host, events: r.events, handlers: r.handlers },
      `replication slot ${this.slot} was missing on ${host}: made it anew and caught up ${r.events} event${r.events === 1 ? '' : 's'} from the outbox${per ? ` (${per})` : ''} before streaming`);
  }

  /** A target went up or down, or was probed: espf.target_states (best effort; the log has the changes). */
  private noteTarget(h: HttpHandler, s: TargetState): void {
    // One after the other: the row ends with the latest state.
    this.targetWrites = this.targetWrites.then(() => noteTargetState(this.opts.db, { handler: h.name, instance: this.opts.instance, ...s })).catch((err: unknown) => {
      this.stream.connectionLost(err);
      this.opts.log.debug({ err: oneLine(err), handler: h.name, url: s.url }, 'writing the target state failed');
    });
  }

  /**
   * Graceful stop, by `deadline` (epoch ms; ESPF_STOP_TIMEOUT after the signal,
   * src/run/run-command.ts): no new events; requests on the wire finish (for at
   * most what is left less the time kept to record, `recordShareMs`); what
   * still waits is recorded until the deadline; the slot is acknowledged.
   * Outcomes the database does not take by then are given up (and counted):
   * they are not acknowledged, and the next start replays them.
   */
  async stop(deadline: number = Date.now() + DEFAULT_STOP_TIMEOUT_S * 1000): Promise<StopResult> {
    if (this.stopped) return { unrecorded: 0 };
    this.stopped = true;
    this.router.stop();
    this.waiting.stop();
    const left = () => Math.max(0, deadline - Date.now());
    // A handler's stop parks what waits once its requests are given up; closing its
    // connections may wait longer for a request on the wire: not the deadline.
    const requestsMs = Math.max(0, left() - recordShareMs(left()));
    await Promise.race([this.deliverers.stop(requestsMs), new Promise((r) => setTimeout(r, requestsMs + 100).unref())]);
    const unrecorded = await this.writer.close(deadline);
    await Promise.race([this.stream.stop(), new Promise((r) => setTimeout(r, Math.min(2000, left())).unref())]);
    this.ack.releaseWaiters();
    return { unrecorded };
  }
}

/** Of `leftMs` to stop in, what is kept to record what waits once requests on the wire are given up: half, at most 5 s. */
export function recordShareMs(leftMs: number): number {
  return Math.min(5000, leftMs / 2);
}
