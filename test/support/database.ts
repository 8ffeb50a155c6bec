import { randomBytes } from 'node:crypto';
import { sql } from '@databases/pg';
import { connect, type Db } from '../../src/db/connect.ts';
import { testServer, withDatabase } from './cluster.ts';

export interface TestDatabase {
  readonly url: string;
  readonly name: string;
  readonly db: Db;
  drop(): Promise<void>;
}

/**
 * A fresh database cloned from the migrated template: one per test file. With
 * `empty`, a database espf migrate never ran on.
 */
export async function createTestDatabase(opts: { empty?: boolean } = {}): Promise<TestDatabase> {
  const s = testServer();
  const name = `espf_${opts.empty ? 'e' : 't'}_${randomBytes(5).toString('hex')}`;
  const admin = connect({ connectionString: s.adminUrl, poolSize: 1 });
  try {
    await admin.query(opts.empty
      ? sql`CREATE DATABASE ${sql.ident(name)}`
      : sql`CREATE DATABASE ${sql.ident(name)} TEMPLATE ${sql.ident(s.template)}`);
  } finally {
    await admin.dispose();
  }
  const url = withDatabase(s.adminUrl, name);
  const db = connect({ connectionString: url, poolSize: 5 });
  return {
    url, name, db,
    drop: async () => {
      await db.dispose();
      const a = connect({ connectionString: s.adminUrl, poolSize: 1 });
      try {
        // Slots pin WAL and block DROP DATABASE: drop this database's slots first.
        await a.query(sql`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE database = ${name} AND active_pid IS NOT NULL`);
        await a.query(sql`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = ${name} AND NOT active`);
        await a.query(sql`DROP DATABASE IF EXISTS ${sql.ident(name)} WITH (FORCE)`);
      } finally {
        await a.dispose();
      }
    },
  };
}

/** An empty database (not cloned from the migrated template): migrate has everything to do. */
export function createEmptyDatabase(): Promise<TestDatabase> {
  return createTestDatabase({ empty: true });
}
