import { sql } from '@databases/pg';
import { EspfError, SQLSTATE, sqlState } from '../errors.ts';
import type { Db } from './connect.ts';
import { redactUrl } from '../security/redact.ts';

/** SQLSTATEs a statement on an espf object fails with when espf migrate never ran. */
const MISSING_OBJECT = new Set<string>([SQLSTATE.undefinedTable, '3F000' /* invalid_schema_name */, '42883' /* undefined_function */]);

/** True when espf migrate has run on this database (espf.migrations exists). */
export async function isMigrated(db: Db): Promise<boolean> {
  const [r] = await db.query(sql`SELECT to_regclass('espf.migrations') IS NOT NULL AS migrated`);
  return r?.migrated === true;
}

export function notMigrated(url: string, cause?: unknown): EspfError {
  return new EspfError('ESPF_NOT_MIGRATED', `the espf schema is missing in ${redactUrl(url)}: run espf migrate first`, { cause });
}

/** Refuses (ESPF_NOT_MIGRATED, one line) a database espf migrate never ran on. */
export async function assertMigrated(db: Db, url: string): Promise<void> {
  if (!(await isMigrated(db))) throw notMigrated(url);
}

/** `err` from a statement, or ESPF_NOT_MIGRATED when it failed because the espf schema is not there. */
export async function explainMissingSchema(db: Db, url: string, err: unknown): Promise<unknown> {
  const state = sqlState(err);
  if (state === undefined || !MISSING_OBJECT.has(state)) return err;
  const migrated = await isMigrated(db).catch(() => true);
  return migrated ? err : notMigrated(url, err);
}
