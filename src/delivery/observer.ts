import type { Item } from './item.ts';
import type { PostResult } from './http-client.ts';
import type { DeliveryState } from './results-writer.ts';
import type { TargetState } from './targets.ts';

/**
 * What the parts of the deliver stage publish: counters as events, gauges as
 * values when they change. src/metrics/metrics.ts listens; nobody reads the
 * parts themselves for metrics.
 */
export interface DeliveryObserver {
  /** One POST to one URL of an http handler finished. */
  attempt(handler: string, result: PostResult): void;
  /** An item reached a recorded state (DELIVERED, FAILED, RETRY, PENDING, SUPERSEDED). */
  outcome(item: Item, state: DeliveryState): void;
  /** A dispatcher produced `produced` events from `sources` source events. */
  dispatched(handler: string, sources: number, produced: number): void;
  /** Items a handler holds in memory now (http: queued, on the wire, waiting for a retry; dispatcher: not yet dispatched). */
  held(handler: string, items: number): void;
  /** POSTs of an http handler on the wire now. */
  inFlight(handler: string, requests: number): void;
  /** Requests of an async http handler waited `ms` for tokens of its bucket (0: the handler has a bucket). */
  bucketWaited(handler: string, ms: number): void;
  /** The state of every target URL of an http handler as configured now: when one changes, or the URLs do. */
  targets(handler: string, states: readonly TargetState[]): void;
  /**
   * Once per http handler: how to read the commit time of the oldest event at
   * the head of one of its queues (null when none waits), read when scraped.
   */
  oldestWaiting(handler: string, read: () => Date | null): void;
}

const nothing = (): void => undefined;

/** Fills the hooks an observer leaves out with no-ops, so that the parts call them unconditionally. */
export function completeObserver(o: Partial<DeliveryObserver> = {}): DeliveryObserver {
  return {
    attempt: o.attempt ?? nothing, outcome: o.outcome ?? nothing, dispatched: o.dispatched ?? nothing,
    held: o.held ?? nothing, inFlight: o.inFlight ?? nothing, bucketWaited: o.bucketWaited ?? nothing,
    targets: o.targets ?? nothing, oldestWaiting: o.oldestWaiting ?? nothing,
  };
}
