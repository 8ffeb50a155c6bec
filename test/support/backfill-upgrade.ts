import { sql } from '@databases/pg';
import type { Db } from '../../src/db/connect.ts';

/**
 * What the upgrade tests of `espf backfill` (test/backfill-target.test.ts,
 * test/backfill.test.ts) put in a database at the previous release: 50 events
 * with their deliveries (delivered, retried, pending), 20 accounts and a backfill
 * of Account/New over them that the previous release left interrupted (batch size
 * 10, no other option). Returns that backfill's id, the events and deliveries as
 * they were, and the files of espf.events and espf.backfills now and after
 * (`files()`: unchanged when the migration rewrote neither table).
 */
export async function seedUnfinishedBackfill(db: Db): Promise<{ id: number; events: unknown[]; deliveries: unknown[]; files(): Promise<unknown[]>; filesBefore: unknown[] }> {
  await db.query(sql`INSERT INTO espf.events (i_event, event_type, variables)
                     SELECT g, 'Account/Blocked', jsonb_build_object('i_event', g, 'i_account', g) FROM generate_series(1, 50) g`);
  await db.query(sql`SELECT setval('espf.events_i_event_seq', 50)`);
  await db.query(sql`INSERT INTO espf.event_deliveries (i_event, handler, state, event_type, order_key, i_account, instance, commit_lsn, attempts)
                     SELECT g, 'EventSender', CASE WHEN g <= 20 THEN 'DELIVERED' WHEN g <= 30 THEN 'RETRY' ELSE 'PENDING' END,
                            'Account/Blocked', 'a:' || g, g, 'main', ('0/' || to_hex(1000 + g))::pg_lsn, CASE WHEN g <= 30 THEN 1 ELSE 0 END
                       FROM generate_series(1, 50) g`);
  const [c] = await db.query(sql`INSERT INTO billing.customer (name) VALUES ('Up') RETURNING i_customer`);
  const [p] = await db.query(sql`INSERT INTO billing.product (name) VALUES ('Up') RETURNING i_product`);
  await db.query(sql`INSERT INTO billing.account (id, i_customer, i_product) SELECT 'up-' || g, ${c.i_customer}, ${p.i_product} FROM generate_series(1, 20) g`);
  await db.query(sql`UPDATE espf.event_types SET enabled = true WHERE name = 'Account/New'`);
  const [bf] = await db.query(sql`INSERT INTO espf.backfills (rule, event_type, source, key_column, batch_size, state, rows_total)
                                  VALUES ('Account/New', 'Account/New', 'billing.account', 'i_account', 10, 'interrupted', 20) RETURNING id`);
  const events = await db.query(sql`SELECT to_jsonb(e) AS e FROM espf.events e ORDER BY i_event`);
  const deliveries = await db.query(sql`SELECT to_jsonb(d) AS d FROM espf.event_deliveries d ORDER BY i_event`);
  const files = async () => db.query(sql`SELECT relname, pg_relation_filenode(oid::regclass) AS f FROM pg_class WHERE oid IN ('espf.events'::regclass, 'espf.backfills'::regclass) ORDER BY relname`);
  return { id: Number(bf.id), events, deliveries, files, filesBefore: await files() };
}
