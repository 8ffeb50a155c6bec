// espf.account_provisioning_statuses and espf.status_api: the status API
// (src/run/status-api.ts) reads and writes them, the console reads them.
import { sql, type Queryable } from '@databases/pg';
import type { Row } from './schema.ts';

/** An account's provisioning status, as the CHECK of espf.account_provisioning_statuses allows it (migrations/0002_espf.sql). */
export const ACCOUNT_STATUSES = ['OK', 'IN_PROGRESS', 'RETRY', 'FAILED'] as const;

export type AccountStatus = (typeof ACCOUNT_STATUSES)[number];

export async function statusApiSettings(db: Queryable): Promise<Pick<Row<'espf.status_api'>, 'enabled' | 'token'> | undefined> {
  const [row] = await db.query(sql`SELECT enabled, token FROM espf.status_api`);
  return row;
}

export type ReportedStatus = { i_account: number; group: string; status: string; message: string | null; i_event: number | null; event_type: string | null; updated_at: Date };

/**
 * A receiver's own status for an account, in one statement: the account must
 * exist (billing.account), and the row is written or nothing is.
 */
export async function reportAccountStatus(db: Queryable, iAccount: number, group: string, status: string, message: string | null): Promise<ReportedStatus | undefined> {
  const [row] = await db.query(sql`
    INSERT INTO espf.account_provisioning_statuses AS s (i_account, handler, status, message, updated_at)
    SELECT ${iAccount}, ${group}, ${status}, ${message}, now()
     WHERE EXISTS (SELECT 1 FROM billing.account a WHERE a.i_account = ${iAccount})
    ON CONFLICT ON CONSTRAINT account_provisioning_statuses_pkey DO UPDATE SET
           status = excluded.status, message = excluded.message, updated_at = excluded.updated_at
    RETURNING s.i_account, s.handler AS "group", s.status, s.message, s.i_event, s.event_type, s.updated_at`);
  return row;
}

export type AccountStatusRow = Pick<Row<'espf.account_provisioning_statuses'>, 'handler' | 'status' | 'i_event' | 'event_type' | 'attempts' | 'message' | 'updated_at'>;

/** One account's status per handler. */
export function accountStatuses(db: Queryable, iAccount: number): Promise<AccountStatusRow[]> {
  return db.query(sql`
    SELECT handler, status, i_event, event_type, attempts, message, updated_at
      FROM espf.account_provisioning_statuses WHERE i_account = ${iAccount} ORDER BY handler`);
}

/** Per handler, how many accounts are FAILED and RETRY (handlers with neither left out). */
export function failingStatusCounts(db: Queryable): Promise<{ handler: string; failed: number; retry: number }[]> {
  const failed: AccountStatus = 'FAILED';
  const retry: AccountStatus = 'RETRY';
  return db.query(sql`
    SELECT handler, count(*) FILTER (WHERE status = ${failed}) AS failed, count(*) FILTER (WHERE status = ${retry}) AS retry
      FROM espf.account_provisioning_statuses WHERE status IN (${failed}, ${retry}) GROUP BY handler`);
}
