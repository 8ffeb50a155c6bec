// A micro-benchmark of PostgreSQL's share of recording outcomes: the CPU time of
// the backend running espf.record_deliveries (sql/400_results.sql) per recorded
// delivery, the WAL it writes per delivery, and the CPU time a logical decoder
// (pgoutput, as the walsender of `espf run` decodes) spends per delivery on that
// WAL, of which it publishes nothing. Batches are what the record stage sends
// (src/delivery/results-writer.ts, src/db/deliveries.ts): DELIVERED, of events
// from the stream (created_at given: the identity check reads espf.events), one
// account each; as one array per column, or, to a tree whose
// espf.record_deliveries takes no arrays (before 2026-12-07), as the JSON array
// of objects it took (so also a tree before `fresh`). Not part of `make bench` (bench/README.md, "PostgreSQL
// per recorded delivery").
//
//   npx tsx bench/record-cost.ts [--rows N] [--batch B] [--rounds R] [--retry]
//                                [--tree DIR]... [--no-rollup] [--fresh]
//
// --tree DIR: migrate with the migrations/ and sql/ of another checkout (e.g. a
// worktree of main); several --tree run in turns, round by round, on one
// throwaway durable cluster (or DATABASE_URL). Without one: this checkout.
// --fresh: each tree also runs with every record marked fresh (no row of it yet:
// written by a plain INSERT, as espf run writes the first outcome of an event
// from the stream; without it, INSERT … ON CONFLICT).
// --no-rollup: each tree also runs with the triggers of
// sql/420_delivery_minutes.sql dropped (what they cost).
// --retry: every delivery is first recorded RETRY, then DELIVERED (both
// measured): the path of an outage's drain (rows updated, not inserted).
import path from 'node:path';
import { sql } from '@databases/pg';
import type { Db } from '../src/db/connect.ts';
import { recordDeliveries, type DeliveryRecord } from '../src/db/deliveries.ts';
import { cpuSeconds } from './lib/cpu.ts';
import { cloneDatabase, dropDatabase, startServer, withDatabase, withDb } from './lib/db.ts';
import { ROOT } from './lib/paths.ts';
import { log, median, round } from './lib/util.ts';
import { migrate } from '../src/migrate/migrate.ts';

const args = process.argv.slice(2);
function option(name: string, dflt: number): number {
  const at = args.indexOf(name);
  return at >= 0 ? Number(args[at + 1]) : dflt;
}
const ROWS = option('--rows', 100_000);
const BATCH = option('--batch', 500);
const ROUNDS = option('--rounds', 3);
const RETRY = args.includes('--retry');
const trees = args.flatMap((a, i) => (args[i - 1] === '--tree' ? [path.resolve(a)] : []));
if (trees.length === 0) trees.push(ROOT);
const FRESH = args.includes('--fresh');
const arms = trees.flatMap((tree) => [{ tree, rollup: true, fresh: false }, ...(FRESH ? [{ tree, rollup: true, fresh: true }] : []),
  ...(args.includes('--no-rollup') ? [{ tree, rollup: false, fresh: false }] : [])]);
const label = (a: { tree: string; rollup: boolean; fresh: boolean }) =>
  `${path.basename(a.tree)}${a.rollup ? '' : ' (no rollup triggers)'}${a.fresh ? ' (fresh)' : ''}`;

const EPOCH = Date.parse('2026-12-07T00:00:00Z');

/** The batches the record stage would send for events 1..ROWS in this state. */
function batches(state: 'DELIVERED' | 'RETRY', now: number, fresh: boolean): DeliveryRecord[][] {
  const out: DeliveryRecord[][] = [];
  for (let first = 1; first <= ROWS; first += BATCH) {
    const rows: DeliveryRecord[] = [];
    for (let i = first; i < Math.min(ROWS + 1, first + BATCH); i++) {
      rows.push({
        i_event: i, handler: 'EventSender', state, event_type: 'Account/Blocked', order_key: `a:${i}`, i_account: i,
        commit_lsn: `0/${(0x16B3748 + Math.floor(i / 1000) * 4096).toString(16).toUpperCase()}`, attempts: 1,
        urls_done: state === 'DELIVERED' ? 1 : 0, last_http_status: state === 'DELIVERED' ? 200 : 503,
        last_error: state === 'DELIVERED' ? null : 'HTTP 503', next_attempt_at: state === 'RETRY' ? now + 60_000 : null,
        committed_at: EPOCH + i, first_attempt_at: now, last_attempt_at: now, finished_at: state === 'DELIVERED' ? now : null,
        steps_done: 0, step_answers: null, created_at: EPOCH + i, fresh,
      });
    }
    out.push(rows);
  }
  return out;
}

/** Records one batch as the tree's function takes it (a tree without `fresh`, before 2026-12-07's tenth session, as JSON). */
async function record(db: Db, rows: DeliveryRecord[], arrays: boolean): Promise<void> {
  if (arrays) await recordDeliveries(db, 'main', rows);
  else await db.query(sql`SELECT espf.record_deliveries('main', ${JSON.stringify(rows.map((r, n) => ({ ...r, n })))}::json, true)`);
}

interface Measured { cpuUs: number; walBytes: number; decodeUs: number }

/** Records `bodies` on one backend; the CPU time, WAL and decoding per delivery. */
async function measure(url: string, bodies: readonly DeliveryRecord[][], slot: string): Promise<Measured> {
  return withDb(url, async (db: Db) => {
    const [{ arrays }] = await db.query(sql`SELECT to_regprocedure('espf.record_deliveries(text, boolean, bigint[], text[], text[], text[], text[], bigint[], pg_lsn[], int[], int[], int[], text[], float8[], float8[], float8[], float8[], float8[], float8[], int[], jsonb[], boolean[])') IS NOT NULL AS arrays`) as [{ arrays: boolean }];
    const [{ pid }] = await db.query(sql`SELECT pg_backend_pid() AS pid`) as [{ pid: number }];
    const [{ lsn: lsn0 }] = await db.query(sql`SELECT pg_current_wal_lsn()::text AS lsn`) as [{ lsn: string }];
    const c0 = cpuSeconds(pid)!;
    for (const body of bodies) await record(db, body, arrays);
    const c1 = cpuSeconds(pid)!;
    const [{ wal }] = await db.query(sql`SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), ${lsn0}::pg_lsn)::float8 AS wal`) as [{ wal: number }];
    // What a walsender does with it: decoded, then left out (nothing of it is published).
    const [{ pid: dpid }] = await db.query(sql`SELECT pg_backend_pid() AS pid`) as [{ pid: number }];
    const d0 = cpuSeconds(dpid)!;
    await db.query(sql`SELECT count(*) FROM pg_logical_slot_get_binary_changes(${slot}, NULL, NULL,
                         'proto_version', '1', 'publication_names', 'espf_events')`);
    const d1 = cpuSeconds(dpid)!;
    return { cpuUs: ((c1 - c0) * 1e6) / ROWS, walBytes: wal / ROWS, decodeUs: ((d1 - d0) * 1e6) / ROWS };
  }, 1);
}

const server = await startServer();
const results = new Map<string, { delivered: Measured[]; retry: Measured[] }>();
try {
  const templates: string[] = [];
  for (const [k, arm] of arms.entries()) {
    const name = `espf_record_cost_tpl_${k}`;
    await dropDatabase(server.adminUrl, name);
    await withDb(server.adminUrl, (db) => db.query(sql`CREATE DATABASE ${sql.ident(name)}`));
    await withDb(withDatabase(server.adminUrl, name), async (db) => {
      await migrate(db, { migrations: path.join(arm.tree, 'migrations'), repeatable: path.join(arm.tree, 'sql') });
      if (!arm.rollup) {
        for (const t of ['delivery_minutes_insert', 'delivery_minutes_update', 'delivery_minutes_delete', 'delivery_minutes_truncate']) {
          await db.query(sql`DROP TRIGGER IF EXISTS ${sql.ident(t)} ON espf.event_deliveries`);
        }
      }
      await db.query(sql`INSERT INTO espf.events (i_event, event_type, variables, created_at)
                         SELECT g, 'Account/Blocked', jsonb_build_object('i_account', g, 'i_customer', 1 + g / 100, 'i_env', 1),
                                ${new Date(EPOCH)}::timestamptz + g * interval '1 millisecond'
                           FROM generate_series(1, ${ROWS}) g`);
      await db.query(sql`VACUUM (FREEZE, ANALYZE) espf.events`);
    }, 1);
    templates.push(name);
    results.set(label(arm), { delivered: [], retry: [] });
  }
  for (let round_ = 1; round_ <= ROUNDS; round_++) {
    for (const [k, arm] of arms.entries()) {
      const name = `espf_record_cost_${k}`;
      const url = await cloneDatabase(server.adminUrl, templates[k]!, name);
      const slot = `espf_record_cost_${process.pid}`;
      try {
        await withDb(url, async (db) => {
          await db.query(sql`CHECKPOINT`);
          await db.query(sql`SELECT pg_create_logical_replication_slot(${slot}, 'pgoutput')`);
        }, 1);
        const r = results.get(label(arm))!;
        const now = Date.now();
        // With --retry the RETRY record is a delivery's first (fresh in a fresh arm), DELIVERED its second.
        if (RETRY) r.retry.push(await measure(url, batches('RETRY', now, arm.fresh), slot));
        const m = await measure(url, batches('DELIVERED', now + 1000, arm.fresh && !RETRY), slot);
        r.delivered.push(m);
        log(`round ${round_}, ${label(arm)}: ${round(m.cpuUs, 2)} µs CPU, ${round(m.walBytes, 0)} B WAL, ${round(m.decodeUs, 2)} µs decoding per delivery`);
      } finally {
        await dropDatabase(server.adminUrl, name);
      }
    }
  }
  for (const t of templates) await dropDatabase(server.adminUrl, t);
} finally {
  await server.stop();
}

const med = (xs: Measured[], k: keyof Measured) => round(median(xs.map((x) => x[k])), 2);
const table = [...results].map(([arm, r]) => ({
  arm,
  [`${RETRY ? 'DELIVERED after RETRY' : 'DELIVERED'}: backend µs`]: med(r.delivered, 'cpuUs'),
  'WAL bytes': med(r.delivered, 'walBytes'),
  'decoding µs': med(r.delivered, 'decodeUs'),
  ...(RETRY ? { 'RETRY: backend µs': med(r.retry, 'cpuUs'), 'RETRY WAL bytes': med(r.retry, 'walBytes') } : {}),
  runs: r.delivered.map((m) => round(m.cpuUs, 2)).join(' / '),
}));
process.stdout.write(`${ROWS} deliveries in batches of ${BATCH}, ${ROUNDS} round(s), medians per delivery\n`);
console.table(table);
