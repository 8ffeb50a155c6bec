import type { StreamEvent } from '../stream/replication.ts';

/**
 * One event on its way to one handler: what the deliver stage works on and
 * the record stage writes. It knows nothing of WAL acknowledgement: the
 * acknowledge stage keeps its own books (src/sender/acknowledge.ts).
 */
export interface Item {
  readonly event: StreamEvent;
  readonly handler: string;
  readonly orderKey: string;
  readonly iAccount: number | null;
  /** The commit position of the event's transaction, as text (espf.event_deliveries.commit_lsn). */
  readonly commitLsn: string | null;
  readonly committedAt: Date | null;
  attempts: number;
  urlsDone: number;
  firstAttemptAt: Date | null;
  nextAttemptAt: Date | null;
  /**
   * A row of espf.event_deliveries holds this delivery, so a restart resumes it.
   * False for an item fresh from the stream until its first record commits,
   * and for a finished item until its final record (DELIVERED, FAILED) commits.
   */
  persisted: boolean;
  /** The JSON body, built once. */
  body?: string;
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
