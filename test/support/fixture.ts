import type { Metrics } from '../../src/metrics/metrics.ts';
import { createTestDatabase, type TestDatabase } from './database.ts';
import { TestReceiver } from './receiver.ts';
import { configureEventSender, seedCustomer, startSender } from './sender.ts';

export type SenderRun = Awaited<ReturnType<typeof startSender>>;

/** "A database, a receiver and a configured, running sender" for one describe block. */
export interface DeliveryFixture {
  t: TestDatabase;
  rx: TestReceiver;
  run: SenderRun;
  ids: { i_product: number; i_customer: number };
  /** The metrics bound to the sender, when asked for. */
  metrics?: Metrics;
}

export interface DeliveryFixtureOptions {
  /** Event types EventSender subscribes to (enabled). */
  readonly types: string[];
  /** Columns of EventSender's espf.http_handlers row. */
  readonly settings?: Record<string, string | number | boolean>;
  /** Where EventSender sends (default: the fixture's receiver). */
  readonly url?: (f: DeliveryFixture) => string | string[];
  /** Seed a product and a customer (default true). */
  readonly seed?: boolean;
  /** Start the in-process sender (default true); with metrics bound when given. */
  readonly sender?: boolean;
  readonly metrics?: (f: DeliveryFixture) => Metrics;
  /** Runs after the database and receiver exist, before EventSender is configured. */
  readonly prepare?: (f: DeliveryFixture) => Promise<void>;
  /** Runs after the configuration, before the sender starts. */
  readonly setup?: (f: DeliveryFixture) => Promise<void>;
}

/**
 * Registers before/after hooks of the current describe block and returns the
 * fixture they fill in: a database cloned from the template, a TestReceiver,
 * EventSender configured and enabled for `types`, a customer, and a running
 * in-process sender. Everything is stopped and dropped after the block.
 */
export function deliveryFixture(opts: DeliveryFixtureOptions): DeliveryFixture {
  const f = {} as DeliveryFixture;
  before(async () => {
    f.t = await createTestDatabase();
    f.rx = await new TestReceiver().listen();
    await opts.prepare?.(f);
    await configureEventSender(f.t.db, opts.url?.(f) ?? f.rx.url, opts.types, opts.settings);
    if (opts.seed !== false) f.ids = await seedCustomer(f.t.db);
    await opts.setup?.(f);
    f.metrics = opts.metrics?.(f);
    if (opts.sender !== false) f.run = await startSender(f.t.db, f.t.url, 'main', { metrics: f.metrics });
  });
  after(async () => {
    await f.run?.stop();
    await f.rx?.close();
    await f.t?.drop();
  });
  return f;
}
