import type { Db } from '../db/connect.ts';
import { connect, ping } from '../db/connect.ts';
import { readEnv } from '../config/env.ts';
import { resolveDatabaseUrl } from '../db/database-url.ts';
import { explainMissingSchema } from '../db/migrated.ts';
import { EspfError, oneLine } from '../errors.ts';

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
      throw await explainMissingSchema(db, url, err);
    }
  } finally {
    await db.dispose();
  }
}
