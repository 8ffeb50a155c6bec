import { rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { sql } from '@databases/pg';
import { connect, type Db } from '../../src/db/connect.ts';
import { startCluster, type Cluster } from '../../src/db/cluster.ts';
import { migrate } from '../../src/migrate/migrate.ts';
import { log, sleep } from './util.ts';

export interface Server {
  readonly adminUrl: string;
  readonly cluster?: Cluster;
  readonly kind: 'throwaway-durable' | 'DATABASE_URL';
  stop(): Promise<void>;
}

/** A durable PostgreSQL of our own (fsync, synchronous_commit, full_page_writes on), or DATABASE_URL. */
export async function startServer(): Promise<Server> {
  if (process.env.DATABASE_URL) {
    return { adminUrl: process.env.DATABASE_URL, kind: 'DATABASE_URL', stop: async () => undefined };
  }
  const dir = path.join(os.tmpdir(), `espf-bench-${process.pid}`);
  const cluster = await startCluster({ dir, durable: true });
  return {
    adminUrl: cluster.url, cluster, kind: 'throwaway-durable',
    stop: async () => {
      await cluster.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

export async function withDb<T>(url: string, fn: (db: Db) => Promise<T>, poolSize = 2): Promise<T> {
  const db = connect({ connectionString: url, poolSize, applicationName: 'espf-bench' });
  try {
    return await fn(db);
  } finally {
    await db.dispose();
  }
}

export interface SeedSizes {
  readonly fanoutAccounts: number;   // accounts of the one big customer (fanout_s, bigtx_eps)
  readonly accounts: number;         // other accounts, 100 per customer
}

/** What the template database holds, by id range (inclusive). */
export interface Seed {
  readonly template: string;
  readonly bigCustomer: number;
  readonly fanoutAccounts: readonly [number, number];
  readonly accounts: readonly [number, number];
  readonly products: readonly [number, number];
}

/**
 * A migrated template database with the billing data every figure starts from.
 * Seeded with capture off (every event type disabled, the migrate default), so
 * the outbox starts empty.
 */
export async function createTemplate(adminUrl: string, name: string, sizes: SeedSizes,
                                     dirs?: { migrations?: string; repeatable?: string }): Promise<Seed> {
  await dropDatabase(adminUrl, name);
  await withDb(adminUrl, (db) => db.query(sql`CREATE DATABASE ${sql.ident(name)}`));
  return withDb(withDatabase(adminUrl, name), async (db) => {
    await migrate(db, dirs);
    const [{ n }] = await db.query(sql`SELECT count(*)::int AS n FROM espf.event_types WHERE enabled`) as [{ n: number }];
    if (n !== 0) throw new Error('template: event types enabled after migrate');
    await db.query(sql`INSERT INTO billing.product (name) SELECT 'product ' || g FROM generate_series(1, 10) g`);
    const [big] = await db.query(sql`INSERT INTO billing.customer (name) VALUES ('fan-out customer') RETURNING i_customer`) as [{ i_customer: number }];
    const nCustomers = Math.max(1, Math.ceil(sizes.accounts / 100));
    await db.query(sql`INSERT INTO billing.customer (name, balance, credit_limit)
                       SELECT 'customer ' || g, 0, 1000 FROM generate_series(1, ${nCustomers}) g`);
    const range = async (where: string) => {
      const [r] = await db.query(sql`SELECT min(i_account)::bigint AS lo, max(i_account)::bigint AS hi FROM billing.account WHERE id LIKE ${where}`) as [{ lo: number; hi: number }];
      return [Number(r.lo), Number(r.hi)] as const;
    };
    await db.query(sql`
      INSERT INTO billing.account (id, i_customer, i_product, balance)
      SELECT 'f' || g, ${big.i_customer}, 1 + g % 10, 100 FROM generate_series(1, ${sizes.fanoutAccounts}) g ORDER BY g`);
    await db.query(sql`
      INSERT INTO billing.account (id, i_customer, i_product, balance)
      SELECT 'a' || g, ${big.i_customer} + 1 + (g - 1) / 100, 1 + g % 10, 1 + g % 50
        FROM generate_series(1, ${sizes.accounts}) g ORDER BY g`);
    const fan = await range('f%');
    const acc = await range('a%');
    if (fan[1] - fan[0] + 1 !== sizes.fanoutAccounts || acc[1] - acc[0] + 1 !== sizes.accounts) throw new Error('template: account ids are not contiguous');
    // Settle before measuring: no autovacuum or checkpoint of the seed during the first figures.
    await db.query(sql`VACUUM (FREEZE, ANALYZE) billing.account, billing.customer, billing.product`);
    await db.query(sql`CHECKPOINT`);
    const [pr] = await db.query(sql`SELECT min(i_product)::bigint AS lo, max(i_product)::bigint AS hi FROM billing.product`) as [{ lo: number; hi: number }];
    return { template: name, bigCustomer: Number(big.i_customer), fanoutAccounts: fan, accounts: acc, products: [Number(pr.lo), Number(pr.hi)] as const };
  }, 1);
}

/** A fresh database cloned from the template; returns its URL. */
export async function cloneDatabase(adminUrl: string, template: string, name: string): Promise<string> {
  await dropDatabase(adminUrl, name);
  await withDb(adminUrl, (db) => db.query(sql`CREATE DATABASE ${sql.ident(name)} TEMPLATE ${sql.ident(template)}`));
  return withDatabase(adminUrl, name);
}

/** Drops a database and the replication slots left in it. */
export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  await withDb(adminUrl, async (db) => {
    for (let attempt = 0; ; attempt++) {
      try {
        const slots = await db.query(sql`SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = ${name}`) as { slot_name: string; active_pid: number | null }[];
        for (const s of slots) {
          if (s.active_pid) await db.query(sql`SELECT pg_terminate_backend(${s.active_pid})`);
          await db.query(sql`SELECT pg_drop_replication_slot(${s.slot_name})`);
        }
        await db.query(sql`DROP DATABASE IF EXISTS ${sql.ident(name)} WITH (FORCE)`);
        return;
      } catch (err) {
        if (attempt >= 20) throw err;
        await sleep(250);
      }
    }
  });
}

export async function serverFacts(url: string): Promise<Record<string, string>> {
  return withDb(url, async (db) => {
    const rows = await db.query(sql`SELECT name, setting FROM pg_settings WHERE name IN
      ('server_version', 'fsync', 'synchronous_commit', 'full_page_writes', 'wal_level', 'shared_buffers',
       'max_wal_size', 'checkpoint_timeout', 'wal_sync_method')`) as { name: string; setting: string }[];
    const out: Record<string, string> = {};
    for (const r of rows) out[r.name] = r.setting;
    return out;
  }, 1);
}

export function logStep(msg: string): void { log(msg); }
