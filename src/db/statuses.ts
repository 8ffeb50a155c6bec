// espf.account_provisioning_statuses and espf.status_api as the status API
// (src/run/status-api.ts) reads and writes them.
import { sql as pgSql, type Queryable } from '@databases/pg';
import { first, q } from './query.ts';

export function statusApiSettings(db: Queryable) {
  return first(db, q.selectFrom('espf.status_api').select(['enabled', 'token']));
}

export type ReportedStatus = { i_account: number; group: string; status: string; message: string | null; i_event: number | null; event_type: string | null; updated_at: Date };

/**
 * A receiver's own status for an account, in one statement: the account must
 * exist (billing.account), and the row is written or nothing is.
 */
export async function reportAccountStatus(db: Queryable, iAccount: number, group: string, status: string, message: string | null): Promise<ReportedStatus | undefined> {
  const [row] = await db.query(pgSql`
    INSERT INTO espf.account_provisioning_statuses AS s (i_account, handler, status, message, updated_at)
    SELECT ${iAccount}, ${group}, ${status}, ${message}, now()
     WHERE EXISTS (SELECT 1 FROM billing.account a WHERE a.i_account = ${iAccount})
    ON CONFLICT ON CONSTRAINT account_provisioning_statuses_pkey DO UPDATE SET
           status = excluded.status, message = excluded.message, updated_at = excluded.updated_at
    RETURNING s.i_account, s.handler AS "group", s.status, s.message, s.i_event, s.event_type, s.updated_at`);
  return row;
}
