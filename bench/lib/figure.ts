import type { Receiver } from './receiver-client.ts';
import type { Seed, Server } from './db.ts';

/** What every figure gets from bench/run.ts. */
export interface BenchContext {
  readonly quick: boolean;
  readonly server: Server;
  readonly seed: Seed;
  readonly receiver: Receiver;
  /** Epoch ms at which this figure's budget is spent: waits are cut short (keeps `make bench` under its limit). */
  readonly deadline: number;
  /** A unique database/instance name for one run of one figure. */
  name(figure: string, run: number): string;
}

/** One run of a figure: numeric values (the run's medians are taken key by key) and details. */
export interface RunResult {
  readonly values: Record<string, number>;
  readonly details?: Record<string, unknown>;
}

export interface Figure<P extends Record<string, unknown> = Record<string, unknown>> {
  readonly name: string;
  /** Seconds this figure may take in all (full, quick); later runs are skipped and waits shortened to keep to it. */
  readonly budgetS: { readonly full: number; readonly quick: number };
  params(ctx: BenchContext): P;
  run(ctx: BenchContext, params: P, run: number): Promise<RunResult>;
}
