import type { Db } from '../db/connect.ts';
import { connect, ping } from '../db/connect.ts';
import { redactUrl } from '../security/redact.ts';
import { readEnv } from '../config/env.ts';
import { resolveDatabaseUrl } from '../db/database-url.ts';
import { EspfError, oneLine, sqlState, SQLSTATE } from '../errors.ts';

/** SQLSTATEs that, on an espf object, mean the database was never migrated. */
const NOT_MIGRATED = new Set<string>([SQLSTATE.undefinedTable, '3F000' /* invalid_schema_name */, '42883' /* undefined_function */]);

/**
 * Runs `fn` on a small pool for one CLI command: DATABASE_URL (or the embedded
 * database), one-line errors for no database and for a database espf migrate
 * never ran on, the pool closed afterwards.
 */
export async function withDb<T>(applicationName: string, fn: (db: Db) => Promise<T>): Promise<T> {
  const url = resolveDatabaseUrl(readEnv());
  let db: Db;
  try {
    db = connect({ connectionString: url, poolSize: 2, applicationName });
  } catch (err) {
    throw new EspfError('ESPF_NO_DATABASE',
      `DATABASE_URL is not a PostgreSQL connection string (postgres://user@host:port/database): ${oneLine(err)}`, { cause: err });
  }
  try {
    await ping(db, url);
    try {
      return await fn(db);
    } catch (err) {
      const state = sqlState(err);
      if (state !== undefined && NOT_MIGRATED.has(state) && /"?espf[."]/.test(oneLine(err))) {
        throw new EspfError('ESPF_NOT_MIGRATED',
          `the espf schema is missing in ${redactUrl(url)} (${oneLine(err)}): run espf migrate first`, { cause: err });
      }
      throw err;
    }
  } finally {
    await db.dispose();
  }
}
