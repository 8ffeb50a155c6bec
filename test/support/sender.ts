import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { sql } from '@databases/pg';
import type { Db } from '../../src/db/connect.ts';
import { provisioningLog, type Logger } from '../../src/log/logger.ts';
import type { Metrics } from '../../src/metrics/metrics.ts';
import type { Shard } from '../../src/db/shards.ts';
import { InstanceRegistry } from '../../src/run/instances.ts';
import { Sender } from '../../src/run/sender.ts';
import { shardSlot, WHOLE } from '../../src/run/shard.ts';
import { eventually } from './receiver.ts';
import { configVersion } from '../../src/db/config.ts';

/** An in-process sender on a test database, with a fast poll of requeued deliveries (and metrics, when given). */
export async function startSender(db: Db, url: string, instance = 'main', opts: { metrics?: Metrics; window?: number; shard?: Shard } = {}): Promise<{ sender: Sender; logDir: string; log: Logger; registry: InstanceRegistry; stop(): Promise<void> }> {
  const logDir = mkdtempSync(path.join(os.tmpdir(), 'espf-log-'));
  const log = pino({ level: process.env.ESPF_TEST_LOG ?? 'silent' });
  const plog = provisioningLog(logDir);
  const slot = await shardSlot(db, instance, opts.shard ?? WHOLE);
  const sender = new Sender({ db, url, instance, slot, shard: opts.shard, log, plog, pollMs: 200, heartbeatMs: 500, observe: opts.metrics, window: opts.window });
  opts.metrics?.bind(sender);
  const registry = new InstanceRegistry({ db, instance, sender, log, intervalMs: 200 });
  await sender.start();
  await eventually(async () => sender.isStreaming, 15_000, 'the sender to stream');
  registry.start();
  return {
    sender, logDir, log, registry,
    stop: async () => {
      await sender.stop();
      await registry.stop();
      await plog.flush();
    },
  };
}

/**
 * Resolves once the configuration in force in the sender is the one committed
 * now (or newer): its version has reached espf.config_version as read at the
 * call (the change came through the stream, src/config/watch.ts).
 */
export async function configApplied(db: Db, sender: Sender, timeoutMs = 15_000): Promise<void> {
  const version = await configVersion(db);
  await eventually(async () => sender.configuration.version >= version, timeoutMs, `the sender to apply configuration version ${version}`);
}

/**
 * Resolves once `slot` is acknowledged past everything committed before the
 * call: the sender has handed out every event written so far and their
 * outcomes are durable (a request it sent for them has arrived). Instead of
 * sleeping to see that nothing is sent.
 */
export async function acknowledgedPastNow(db: Db, slot = 'espf_main', timeoutMs = 15_000): Promise<void> {
  // The insert position, not the write position: that one may still be behind a commit (synchronous_commit off).
  const [{ lsn }] = await db.query(sql`SELECT pg_current_wal_insert_lsn()::text AS lsn`);
  await eventually(async () => (await db.query(sql`
    SELECT confirmed_flush_lsn >= ${lsn}::pg_lsn AS ok FROM pg_replication_slots
     WHERE slot_name = ${slot} AND database = current_database()`))[0]?.ok === true, timeoutMs, `slot ${slot} acknowledged past ${lsn}`);
}

/** Points EventSender at a URL, enables it, subscribes it and enables the types. */
export async function configureEventSender(db: Db, url: string | string[], types: string[], settings: Record<string, string | number | boolean> = {}): Promise<void> {
  const urls = Array.isArray(url) ? url : [url];
  await db.tx(async (tx) => {
    await tx.query(sql`UPDATE espf.http_handlers SET url = ${urls}::text[], retry_delay = 0.05, retry_max_delay = 0.2,
                                 token_rate = 1000000, token_burstiness = 1000000 WHERE handler = 'EventSender'`);
    for (const [k, v] of Object.entries(settings)) {
      await tx.query(sql`UPDATE espf.http_handlers SET ${sql.ident(k)} = ${v} WHERE handler = 'EventSender'`);
    }
    await tx.query(sql`UPDATE espf.handlers SET enabled = true WHERE name = 'EventSender'`);
    await tx.query(sql`INSERT INTO espf.subscriptions SELECT 'EventSender', t FROM unnest(${types}::text[]) t ON CONFLICT DO NOTHING`);
    await tx.query(sql`UPDATE espf.event_types SET enabled = true WHERE name = ANY(${types}::text[])`);
  });
}

/** A product and a customer to hang accounts on. */
export async function seedCustomer(db: Db, opts: { name?: string } = {}): Promise<{ i_product: number; i_customer: number }> {
  const [p] = await db.query(sql`INSERT INTO billing.product (name) VALUES ('LTE') RETURNING i_product`);
  const [c] = await db.query(sql`INSERT INTO billing.customer (name) VALUES (${opts.name ?? 'ACME'}) RETURNING i_customer`);
  return { i_product: p.i_product, i_customer: c.i_customer };
}

/** Accounts `<prefix>1` … `<prefix>n` of a customer, in one statement; their i_account in order. */
export async function addAccounts(db: Db, ids: { i_product: number; i_customer: number }, n: number, prefix: string,
  extra: { balance_control?: string; blocked?: boolean } = {}): Promise<number[]> {
  const rows = await db.query(sql`
    INSERT INTO billing.account (id, i_customer, i_product, balance_control, blocked)
    SELECT ${prefix} || g, ${ids.i_customer}, ${ids.i_product}, ${extra.balance_control ?? 'individual'}, ${extra.blocked ?? false}
      FROM generate_series(1, ${n}) g RETURNING i_account`);
  return rows.map((r) => r.i_account);
}
