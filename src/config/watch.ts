import { oneLine } from '../errors.ts';
import type { Db } from '../db/connect.ts';
import type { Logger } from '../log/logger.ts';
import { Poller } from '../poller.ts';
import { loadConfig, type ConfigSnapshot } from './snapshot.ts';

/**
 * The configuration rows of one instance, read at start and then every
 * `pollMs`: a change applies within two polls. A failed read keeps the last
 * snapshot.
 */
export class ConfigWatcher {
  private snapshot?: ConfigSnapshot;
  private readonly poller: Poller;

  constructor(private readonly opts: {
    readonly db: Db;
    readonly instance: string;
    readonly log: Logger;
    /** A snapshot was read (also at start). */
    readonly changed: (config: ConfigSnapshot) => void;
    readonly onDbError: (err: unknown) => void;
  }) {
    this.poller = new Poller(() => this.read(), (err) => {
      opts.onDbError(err);
      opts.log.warn({ err: oneLine(err) }, 'reading configuration failed; keeping the last one');
    });
  }

  get current(): ConfigSnapshot {
    if (!this.snapshot) throw new Error('the configuration is not loaded yet');
    return this.snapshot;
  }

  /** Reads the configuration once (errors propagate), then polls. */
  async start(pollMs: number): Promise<void> {
    await this.read();
    this.poller.start(pollMs);
  }

  private async read(): Promise<void> {
    this.snapshot = await loadConfig(this.opts.db, this.opts.instance);
    this.opts.changed(this.snapshot);
  }

  stop(): void {
    this.poller.stop();
  }
}
