import type { StreamEvent } from '../stream/replication.ts';
import type { StepAnswer } from './steps/render.ts';

/**
 * One event on its way to one handler: what the deliver stage works on and
 * the record stage writes. Immutable: the route stage (src/pipeline/route.ts)
 * and the waiting pages (src/pipeline/waiting.ts) create it, and nobody
 * changes it after. Its attempt state lives in the deliver stage
 * (`Delivery`, src/delivery/keyed-queue.ts) and reaches the record stage with
 * each outcome (src/delivery/results-writer.ts). It knows nothing of WAL
 * acknowledgement: the acknowledge stage keeps its own books
 * (src/pipeline/acknowledge.ts).
 */
export interface Item {
  readonly event: StreamEvent;
  readonly handler: string;
  readonly orderKey: string;
  readonly iAccount: number | null;
  /** The commit position of the event's transaction, as text (espf.event_deliveries.commit_lsn). */
  readonly commitLsn: string | null;
  readonly committedAt: Date | null;
  /**
   * Null for an item fresh from the stream. For one read back from
   * espf.event_deliveries (it waits there: a restart resumes it), the attempt
   * state its row had.
   */
  readonly resumed: AttemptState | null;
  /**
   * No row of this delivery is in espf.event_deliveries yet: set by the route
   * stage for an event from the stream past what was recorded before (or one a
   * replay's lookup found unrecorded), cleared by the record stage at its first
   * outcome, which it then writes by a plain INSERT (sql/400_results.sql).
   */
  fresh?: boolean;
}

/** How far the attempts of one delivery went: a row of espf.event_deliveries, or the deliver stage's own count. */
export interface AttemptState {
  readonly attempts: number;
  readonly urlsDone: number;
  readonly firstAttemptAt: Date | null;
  /** When a delivery that waits for its retry (RETRY) may be attempted again. */
  readonly nextAttemptAt: Date | null;
  /** Request steps (docs/handlers.md): how many are done, and their answers; none when left out. */
  readonly stepsDone?: number;
  readonly stepAnswers?: readonly StepAnswer[] | null;
}

/** Events of one key reach a handler in commit order: the account, else the customer, product or owner. */
export function orderKey(e: StreamEvent): string {
  const v = e.variables;
  if (v.i_account != null) return `a:${String(v.i_account)}`;
  if (v.i_customer != null) return `c:${String(v.i_customer)}`;
  if (v.i_product != null) return `p:${String(v.i_product)}`;
  if (typeof v.owner_type === 'string' && v.owner_id != null) return `${v.owner_type.charAt(0)}:${String(v.owner_id)}`;
  return `e:${e.i_event}`;
}

export function accountOf(e: StreamEvent): number | null {
  const a = e.variables.i_account;
  return typeof a === 'number' ? a : null;
}
