/** Whether a record has committed: `done` turns true when the promise of its batch resolves. */
export interface Durable {
  readonly done: boolean;
}

/**
 * Follows the promises of durability the record stage returns
 * (`ResultsWriter.record`, src/delivery/results-writer.ts), which are shared
 * by every record of one batch: one callback per batch, not per record, so
 * the per-event path stays free of closures.
 */
export class DurableBatches {
  private last?: Promise<void>;
  private cell: { done: boolean } = { done: true };
  private open = 0;

  /** Batches followed whose promise has not resolved yet. */
  get pending(): number { return this.open; }

  /** The durability of a record whose batch resolves `durable`. */
  of(durable: Promise<void>): Durable {
    if (durable !== this.last) {
      this.last = durable;
      const cell = { done: false };
      this.cell = cell;
      this.open++;
      void durable.then(() => { cell.done = true; this.open--; });
    }
    return this.cell;
  }
}
