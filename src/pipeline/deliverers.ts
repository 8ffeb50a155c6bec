import type { ConfigSnapshot, HandlerConfig } from '../config/snapshot.ts';
import type { Db } from '../db/connect.ts';
import { DispatcherRunner } from '../delivery/dispatcher-runner.ts';
import { HttpHandler, type HttpHandlerDeps } from '../delivery/http-handler.ts';
import type { Item } from '../delivery/item.ts';
import { completeObserver, type DeliveryObserver } from '../delivery/observer.ts';
import type { SpillWindow } from '../delivery/window.ts';
import type { Logger } from '../log/logger.ts';

export interface DeliverersDeps extends Omit<HttpHandlerDeps, 'config' | 'observer' | 'window'> {
  readonly db: Db;
  readonly log: Logger;
  /** The configuration in force (live). */
  readonly config: () => ConfigSnapshot;
  /** A dispatcher committed these items. */
  readonly dispatched: (items: readonly Item[]) => void;
  /** Where the parts publish their counters and gauges (src/metrics/metrics.ts). */
  readonly observer?: Partial<DeliveryObserver>;
  /** The memory window of an http handler (owned by the waiting deliveries, src/pipeline/waiting.ts). */
  readonly window: (handler: string) => SpillWindow;
  readonly onDbError: (err: unknown) => void;
}

/**
 * The deliver stage: one HttpHandler per http handler and one
 * DispatcherRunner per dispatcher of this instance, created as the
 * configuration names them. Items come in from the route stage and the
 * requeue path; outcomes go to the record stage.
 */
export class Deliverers {
  readonly http = new Map<string, HttpHandler>();
  readonly dispatchers = new Map<string, DispatcherRunner>();

  private readonly observer: DeliveryObserver;

  constructor(private readonly deps: DeliverersDeps) {
    this.observer = completeObserver(deps.observer);
  }

  /** Creates the handlers the configuration names and applies its changes (rates, enabled) to all. */
  sync(config: ConfigSnapshot): void {
    const d = this.deps;
    for (const h of config.handlers.values()) {
      if (h.kind === 'http' && !this.http.has(h.name)) {
        this.http.set(h.name, new HttpHandler(h.name, {
          instance: d.instance, record: d.record, plog: d.plog, log: d.log, observer: this.observer,
          window: d.window(h.name), target: d.target, client: d.client,
          config: () => d.config().handlers.get(h.name),
        }));
      } else if (h.kind === 'dispatcher' && !this.dispatchers.has(h.name)) {
        this.dispatchers.set(h.name, new DispatcherRunner(h.name, d.db, d.instance, d.log, d.dispatched, this.observer, d.onDbError));
      }
    }
    for (const h of this.http.values()) h.reconfigure();
  }

  /** Hands an item fresh from the stream to its handler. */
  deliver(h: HandlerConfig, item: Item): void {
    if (h.kind === 'http') this.http.get(h.name)?.enqueue(item);
    else this.dispatchers.get(h.name)?.enqueue(item);
  }

  /** The http handlers this configuration gives this instance. */
  httpHandlers(config: ConfigSnapshot): HttpHandler[] {
    return config.httpHandlerNames.map((n) => this.http.get(n)).filter((h): h is HttpHandler => h !== undefined);
  }

  /** Requests on the wire finish (at most maxWaitMs); what waits is recorded. */
  async stop(maxWaitMs: number): Promise<void> {
    await Promise.all([
      ...[...this.http.values()].map((h) => h.stop(maxWaitMs)),
      ...[...this.dispatchers.values()].map((r) => r.stop(maxWaitMs)),
    ]);
  }
}
