// espf.migrations and the statements of `espf migrate` (src/migrate/migrate.ts):
// its advisory lock, the bootstrap of espf.migrations, a migration's record,
// and the text of a migration or repeatable file run as it is.
import { sql, type Queryable } from '@databases/pg';

/** Same key for every espf migrate: two migrates at once run one after the other. */
export const MIGRATE_LOCK_KEY = 0x65737066; // 'espf'

/** Waits for the migrate lock (a session lock: take and release it on one connection). */
export async function lockMigrate(db: Queryable): Promise<void> {
  await db.query(sql`SELECT pg_advisory_lock(${MIGRATE_LOCK_KEY})`);
}

export async function unlockMigrate(db: Queryable): Promise<void> {
  await db.query(sql`SELECT pg_advisory_unlock(${MIGRATE_LOCK_KEY})`);
}

/** Runs a file of SQL statements as it is (src/migrate/bootstrap.sql). */
export async function runSqlFile(db: Queryable, file: string): Promise<void> {
  await db.query(sql.file(file));
}

/**
 * Runs the text of a migration or repeatable file as it is: it is the
 * repository's own SQL (migrations/, sql/), never input.
 */
export async function runSqlText(db: Queryable, text: string): Promise<void> {
  await db.query(sql.__dangerous__rawValue(text));
}

export interface MigrationRecord { readonly version: number; readonly name: string; readonly checksum: string }

export function appliedMigrations(db: Queryable): Promise<MigrationRecord[]> {
  return db.query(sql`SELECT version, name, checksum FROM espf.migrations ORDER BY version`);
}

/** Records a migration (first in its transaction: two installers racing cannot both apply it). */
export async function recordMigration(db: Queryable, m: MigrationRecord): Promise<void> {
  await db.query(sql`INSERT INTO espf.migrations (version, name, checksum) VALUES (${m.version}, ${m.name}, ${m.checksum})`);
}

/** Replaces the recorded checksum of a migration (an accepted older sum by the statement sum). */
export async function restampMigration(db: Queryable, version: number, checksum: string): Promise<void> {
  await db.query(sql`UPDATE espf.migrations SET checksum = ${checksum} WHERE version = ${version}`);
}
