// espf.resend (sql/700_resend.sql) with every filter it takes: the one batch
// statement of `espf resend` and of the console's resends (src/cli/resend-command.ts).
import { sql, type Queryable } from '@databases/pg';

/** What one call of espf.resend selects (null: any). */
export interface ResendFilter {
  readonly events: readonly number[] | null;
  readonly account: number | null;
  readonly handler: string | null;
  readonly status: string | null;
  /** Finished at or after. */
  readonly since: Date | null;
  /** Finished at or before (null: now()). */
  readonly until: Date | null;
  readonly type: string | null;
  /** Created at or after / before (a time PostgreSQL reads). */
  readonly createdSince: string | null;
  readonly createdUntil: string | null;
}

/** One batch of espf.resend: the deliveries re-queued (or, on a dry run, selected). */
export async function resendFiltered(db: Queryable, c: ResendFilter, maxRows: number, dryRun: boolean): Promise<number> {
  const [r] = await db.query(sql`
    SELECT espf.resend(i_events => ${c.events}::bigint[], i_account => ${c.account}::bigint,
                       handler => ${c.handler}::text, status => ${c.status}::text,
                       since => ${c.since}::timestamptz, until => ${c.until}::timestamptz,
                       max_rows => ${maxRows}::int, dry_run => ${dryRun},
                       event_type => ${c.type}::text, created_since => ${c.createdSince}::timestamptz,
                       created_until => ${c.createdUntil}::timestamptz) AS n`);
  return Number(r.n);
}

/** The start of a resend (now) and the `since` it gives as a time (null when `since` is neither a time nor an interval). */
export async function resendWindow(db: Queryable, since: string | null): Promise<{ started: Date; since: Date | null }> {
  const [t] = await db.query(sql`SELECT now() AS started, espf.resend_since(${since}) AS since`);
  return t;
}
