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

/** A fresh database cloned from the migrated template: one per test file. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const s = testServer();
  const name = `espf_t_${randomBytes(5).toString('hex')}`;
  const admin = connect({ connectionString: s.adminUrl, poolSize: 1 });
  try {
    await admin.query(sql`CREATE DATABASE ${sql.ident(name)} TEMPLATE ${sql.ident(s.template)}`);
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
export async function createEmptyDatabase(): Promise<{ url: string; name: string; drop(): Promise<void> }> {
  const s = testServer();
  const name = `espf_e_${randomBytes(5).toString('hex')}`;
  const admin = connect({ connectionString: s.adminUrl, poolSize: 1 });
  try {
    await admin.query(sql`CREATE DATABASE ${sql.ident(name)}`);
  } finally {
    await admin.dispose();
  }
  return {
    url: withDatabase(s.adminUrl, name),
    name,
    drop: async () => {
      const a = connect({ connectionString: s.adminUrl, poolSize: 1 });
      try {
        await a.query(sql`DROP DATABASE IF EXISTS ${sql.ident(name)} WITH (FORCE)`);
      } finally {
        await a.dispose();
      }
    },
  };
}
