import type { Metrics } from '../../src/metrics/metrics.ts';
import type { Shard } from '../../src/db/shards.ts';
import { EspfProcess } from './child.ts';
import { createTestDatabase, type TestDatabase } from './database.ts';
import { TestReceiver } from './receiver.ts';
import { configureEventSender, seedCustomer, startSender } from './sender.ts';

export type SenderRun = Awaited<ReturnType<typeof startSender>>;

/** What the fixture needs of a receiver: where EventSender sends, and how to stop it. */
export interface FixtureReceiver {
  readonly url: string;
  close(): Promise<void>;
}

/** An in-process sender of the fixture's database (test/support/sender.ts): instance, shard, memory window, metrics. */
export interface SenderOptions {
  readonly instance?: string;
  readonly shard?: Shard;
  readonly window?: number;
  readonly metrics?: Metrics;
}

/** `espf run` as a child process on the fixture's database (test/support/child.ts). */
export interface ChildOptions {
  readonly instance?: string;
  readonly env?: Record<string, string>;
  readonly args?: readonly string[];
  readonly nodeArgs?: readonly string[];
}

/** "A database, a receiver and a configured, running sender" for one describe block. */
export interface DeliveryFixture<R extends FixtureReceiver = TestReceiver> {
  t: TestDatabase;
  rx: R;
  /** The in-process sender the fixture started (`sender` not false nor 'child'); a test may put another in its place: it is stopped too. */
  run: SenderRun;
  /** `espf run` as a child process, when `sender: 'child'`. */
  child: EspfProcess;
  ids: { i_product: number; i_customer: number };
  /** The metrics bound to the sender, when asked for. */
  metrics?: Metrics;
  /** Starts another in-process sender on the fixture's database; stopped after the block (or test, with `each`), before the database is dropped. */
  startSender(opts?: SenderOptions): Promise<SenderRun>;
  /** Starts `espf run` as a child process on the fixture's database; stopped likewise. */
  spawn(opts?: ChildOptions): EspfProcess;
}

export interface DeliveryFixtureOptions<R extends FixtureReceiver = TestReceiver> {
  /**
   * Event types EventSender subscribes to (enabled): EventSender is pointed
   * at the receiver (`url`), given `settings` and enabled. Without, it is left
   * as espf migrate made it (for tests where configuring is the step under test).
   */
  readonly types?: string[];
  /** Columns of EventSender's espf.http_handlers row, set one at a time in this order (a maximum before the minimum it bounds). */
  readonly settings?: Record<string, string | number | boolean>;
  /** Where EventSender sends (default: the fixture's receiver). */
  readonly url?: (f: DeliveryFixture<R>) => string | string[];
  /** The receiver (default: a TestReceiver). */
  readonly receiver?: () => Promise<R>;
  /** Seed a product and a customer (default true). */
  readonly seed?: boolean;
  /**
   * The sender the fixture starts (default true): the in-process sender, with
   * metrics bound when given; 'child': `espf run` as a child process (`child`
   * options), awaited until it streams; false: none (a test starts its own
   * with `startSender` or `spawn`).
   */
  readonly sender?: boolean | 'child';
  readonly child?: ChildOptions;
  readonly metrics?: (f: DeliveryFixture<R>) => Metrics;
  /** Runs after the database and receiver exist, before EventSender is configured. */
  readonly prepare?: (f: DeliveryFixture<R>) => Promise<void>;
  /** Runs after the configuration, before the sender starts. */
  readonly setup?: (f: DeliveryFixture<R>) => Promise<void>;
  /** A fresh world for every test (beforeEach/afterEach) instead of one for the block. */
  readonly each?: boolean;
}

/**
 * Registers before/after hooks of the current describe block and returns the
 * fixture they fill in: a database cloned from the template, a receiver,
 * EventSender configured and enabled for `types`, a customer, and a running
 * sender. Everything is stopped and dropped after the block: the senders and
 * processes first (newest first), then the receiver, then the database.
 */
export function deliveryFixture<R extends FixtureReceiver = TestReceiver>(opts: DeliveryFixtureOptions<R>): DeliveryFixture<R> {
  const stops: (() => Promise<void>)[] = [];
  const f = {
    startSender: async (o: SenderOptions = {}) => {
      const run = await startSender(f.t.db, f.t.url, o.instance ?? 'main', { metrics: o.metrics, window: o.window, shard: o.shard });
      let stopped: Promise<void> | undefined;
      const stop = () => (stopped ??= run.stop());
      stops.push(stop);
      return { ...run, stop };
    },
    spawn: (o: ChildOptions = {}) => {
      const p = new EspfProcess(f.t.url, o.instance ?? 'main', o.env, o.args, o.nodeArgs);
      stops.push(() => p.stop());
      return p;
    },
  } as DeliveryFixture<R>;
  const setUp = async () => {
    f.t = await createTestDatabase();
    f.rx = await (opts.receiver ? opts.receiver() : new TestReceiver().listen() as unknown as Promise<R>);
    await opts.prepare?.(f);
    if (opts.types) await configureEventSender(f.t.db, opts.url?.(f) ?? f.rx.url, opts.types, opts.settings);
    if (opts.seed !== false) f.ids = await seedCustomer(f.t.db);
    await opts.setup?.(f);
    f.metrics = opts.metrics?.(f);
    if (opts.sender === 'child') {
      f.child = f.spawn(opts.child);
      await f.child.streaming();
    } else if (opts.sender !== false) {
      f.run = await f.startSender({ metrics: f.metrics });
    }
  };
  const tearDown = async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
    await f.run?.stop(); // also a sender a test put in its place (f.run = …); the fixture's own stop once
    await f.child?.stop();
    Object.assign(f, { run: undefined, child: undefined });
    await f.rx?.close();
    await f.t?.drop();
  };
  if (opts.each) {
    beforeEach(setUp);
    afterEach(tearDown);
  } else {
    before(setUp);
    after(tearDown);
  }
  return f;
}
