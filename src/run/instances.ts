import type { Db } from '../db/connect.ts';
import { instanceHeartbeat, instanceStopped } from '../db/instances.ts';
import { waitingHandlers, type WaitingHandler } from '../db/reports.ts';
import type { Shard } from '../db/shards.ts';
import { oneLine } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import { formatLsn } from '../stream/lsn.ts';


export interface InstanceSource {
  readonly isStreaming: boolean;
  readonly durableLsn: bigint;
  /** The shard of the instance the process serves ({ k: 0, n: 1 }: the whole instance). */
  readonly shard: Shard;
  /** The enabled handlers the instance serves now. */
  readonly servedHandlers: readonly string[];
}

export interface RegistryOptions {
  readonly db: Db;
  readonly instance: string;
  readonly sender: InstanceSource;
  readonly log: Logger;
  readonly intervalMs?: number;   // default 10000
}

/**
 * The instance's row of espf.instances (sql/450_catch_up.sql): a heartbeat
 * says when it streamed, how far it has processed, and which handlers its slot
 * carries. Each beat also reads which handlers of other instances wait on one
 * that is not streaming, for /healthz.
 */
export class InstanceRegistry {
  private timer?: NodeJS.Timeout;
  private waiting: WaitingHandler[] = [];
  private beating?: Promise<void>;

  constructor(private readonly opts: RegistryOptions) {}

  /** Handlers of other instances waiting on one that is not streaming, as of the last beat. */
  get waitingHandlers(): readonly WaitingHandler[] { return this.waiting; }

  start(): void {
    void this.beat();
    this.timer = setInterval(() => void this.beat(), this.opts.intervalMs ?? 10_000);
  }

  beat(): Promise<void> {
    this.beating ??= this.beatOnce().finally(() => { this.beating = undefined; });
    return this.beating;
  }

  private async beatOnce(): Promise<void> {
    const { db, instance, sender } = this.opts;
    try {
      // How far it processed means something only while it streams: between a lost
      // connection and the next stream the slot may be made anew, its positions
      // starting over (or on another server after a failover).
      const durable = sender.isStreaming ? formatLsn(sender.durableLsn) : null;
      await instanceHeartbeat(db, instance, { streaming: sender.isStreaming, durableLsn: durable, served: sender.servedHandlers, shard: sender.shard });
      const rows = await waitingHandlers(db, instance);
      for (const w of rows) {
        if (!this.waiting.some((x) => x.handler === w.handler && x.instance === w.instance)) {
          this.opts.log.warn({ handler: w.handler, instance: w.instance, waiting_events: w.waiting_events },
            `handler ${w.handler} waits on instance ${w.instance}, which ${w.instance_state === 'never streamed' ? 'has not streamed yet' : 'is not streaming'}; ${w.waiting_events} events wait`);
        }
      }
      this.waiting = rows;
    } catch (err) {
      this.opts.log.warn({ err: oneLine(err) }, 'instance heartbeat failed; will retry');
    }
  }

  /** A graceful stop: a last beat (how far it processed), then stopped_at. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.beating;
    await this.beatOnce();
    await instanceStopped(this.opts.db, this.opts.instance).catch(() => undefined);
  }
}
