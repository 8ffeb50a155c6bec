import { configInForce, type InstanceHandlerRow } from '../db/config.ts';
import type { Db } from '../db/connect.ts';
import { EspfError } from '../errors.ts';
import { CONFIG_PREFIX } from '../stream/replication.ts';
import { snapshotOf, type ConfigSnapshot } from './snapshot.ts';

/**
 * The configuration of one instance in force: read from the rows at start,
 * then changed only by the configuration changes the stream brings, each at
 * its commit position (the route stage hands them here before the events
 * after them; docs/replication.md, "How configuration changes reach espf
 * run"). A change whose version is not newer than the one in force is one
 * the stream replays: ignored. No polling.
 */
export class ConfigWatcher {
  private snapshot?: ConfigSnapshot;

  constructor(private readonly opts: {
    readonly db: Db;
    readonly instance: string;
    /** A new configuration is in force (also the first, at start). */
    readonly changed: (config: ConfigSnapshot) => void;
  }) {}

  get current(): ConfigSnapshot {
    if (!this.snapshot) throw new Error('the configuration is not loaded yet');
    return this.snapshot;
  }

  /**
   * Reads the configuration rows and their version (errors propagate): at
   * start, and when the slot was made anew, once the slot exists (every
   * change committed after it comes through the slot). In force unless the
   * one in force is as new.
   */
  async read(): Promise<void> {
    const { version, handlers } = await configInForce(this.opts.db);
    if (this.snapshot && version <= this.snapshot.version) return;
    this.use(snapshotOf(version, handlers, this.opts.instance));
  }

  /**
   * A configuration change from the stream (the content of an espf_config
   * message): in force from now on when it is newer than the one in force;
   * returns whether it was.
   */
  apply(content: Uint8Array): boolean {
    const doc = parseChange(content);
    if (this.snapshot && doc.version <= this.snapshot.version) return false;
    this.use(snapshotOf(doc.version, doc.handlers, this.opts.instance));
    return true;
  }

  private use(snapshot: ConfigSnapshot): void {
    this.snapshot = snapshot;
    this.opts.changed(snapshot);
  }
}

function parseChange(content: Uint8Array): { version: number; handlers: InstanceHandlerRow[] } {
  const doc = JSON.parse(Buffer.from(content.buffer, content.byteOffset, content.byteLength).toString('utf8')) as { version?: unknown; handlers?: unknown };
  if (typeof doc.version !== 'number' || !Array.isArray(doc.handlers)) {
    throw new EspfError('ESPF_STREAM_PROTOCOL', `an ${CONFIG_PREFIX} message without a version and handlers`);
  }
  return { version: doc.version, handlers: doc.handlers as InstanceHandlerRow[] };
}
