import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Connection } from '@databases/pg';
import type { Db } from '../db/connect.ts';
import {
  appliedMigrations, lockMigrate, recordMigration, restampMigration, runSqlFile, runSqlText, unlockMigrate,
} from '../db/migrations.ts';
import { changedBuiltinRules } from '../db/rules.ts';
import { EspfError, oneLine } from '../errors.ts';
import { MIGRATIONS_DIR, REPEATABLE_SQL_DIR } from '../paths.ts';
import { parseReleasedSums, sha256, statementSum } from './checksum.ts';

export interface MigrationFile {
  readonly version: number;
  readonly name: string;
  readonly file: string;
  readonly checksum: string;                  // what is recorded: statementSum (src/migrate/checksum.ts)
  readonly accepted: ReadonlySet<string>;     // recorded sums that stand for this file (see readMigrations)
  readonly text: string;
}

export interface MigrateResult {
  readonly applied: readonly string[];     // migrations applied by this run
  readonly alreadyApplied: number;
  readonly repeatable: readonly string[];  // sql/ files re-applied
  readonly keptRules: readonly string[];   // built-in rules a DBA changed, kept as they are
}

export { MIGRATE_LOCK_KEY } from '../db/migrations.ts';

const MIGRATION_NAME = /^(\d{4})_([a-z0-9_]+)\.sql$/;

export async function readMigrations(dir = MIGRATIONS_DIR): Promise<MigrationFile[]> {
  const names = (await readdir(dir)).filter((n) => n.endsWith('.sql')).sort();
  const released = await readReleasedSums(dir);
  const files: MigrationFile[] = [];
  for (const name of names) {
    const m = MIGRATION_NAME.exec(name);
    if (!m) throw new EspfError('ESPF_MIGRATION_FAILED', `migrations/${name}: name must be NNNN_lower_case_name.sql`);
    const text = await readFile(path.join(dir, name), 'utf8');
    const checksum = statementSum(text);
    // A database migrated before statement sums recorded the sha256 of the whole
    // file: of this file, or of a released version whose comments were reworded
    // since (its statements the same as this file's).
    const reworded = [...(released.get(name) ?? [])].filter(([, statements]) => statements === checksum).map(([whole]) => whole);
    const accepted = new Set([checksum, sha256(text), ...reworded]);
    files.push({ version: Number(m[1]), name, file: path.join(dir, name), text, checksum, accepted });
  }
  const seen = new Set<number>();
  for (const f of files) {
    if (seen.has(f.version)) throw new EspfError('ESPF_MIGRATION_FAILED', `migrations/: two files share version ${f.version}`);
    seen.add(f.version);
  }
  return files;
}

/** migrations/released.sha256 (src/migrate/checksum.ts); none when the file is missing. */
async function readReleasedSums(dir: string): Promise<Map<string, Map<string, string>>> {
  let text: string;
  try {
    text = await readFile(path.join(dir, 'released.sha256'), 'utf8');
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return new Map();
    throw err;
  }
  try {
    return parseReleasedSums(text);
  } catch (err) {
    throw new EspfError('ESPF_MIGRATION_FAILED', oneLine(err), { cause: err });
  }
}

async function readRepeatable(dir = REPEATABLE_SQL_DIR): Promise<{ name: string; text: string }[]> {
  const names = (await readdir(dir)).filter((n) => n.endsWith('.sql')).sort();
  return Promise.all(names.map(async (name) => ({ name, text: await readFile(path.join(dir, name), 'utf8') })));
}

/**
 * Applies every migration not yet applied, in order, each in its own
 * transaction with its record, then re-applies the repeatable SQL of sql/ in one
 * transaction. Holds an advisory lock throughout, so concurrent runs serialise.
 */
export async function migrate(db: Db, dirs?: { migrations?: string; repeatable?: string }): Promise<MigrateResult> {
  const migrations = await readMigrations(dirs?.migrations);
  const repeatable = await readRepeatable(dirs?.repeatable);
  return db.task(async (conn: Connection) => {
    await lockMigrate(conn);
    try {
      await runSqlFile(conn, fileURLToPath(new URL('bootstrap.sql', import.meta.url)));
      const rows = await appliedMigrations(conn);
      const done = new Map(rows.map((r) => [r.version, r]));
      const restamp: MigrationFile[] = [];
      for (const m of migrations) {
        const prior = done.get(m.version);
        if (prior && !m.accepted.has(prior.checksum)) {
          throw new EspfError('ESPF_MIGRATION_EDITED',
            `migrations/${m.name} was edited after it was applied (checksum differs from the one recorded in espf.migrations); never edit a shipped migration: add a new one`);
        }
        if (prior && prior.checksum !== m.checksum) restamp.push(m);
      }
      // Every recorded file is accepted: record the statement sum of those that hold
      // a whole-file sum, so that the next run compares one sum.
      if (restamp.length > 0) {
        await conn.tx(async (tx) => {
          for (const m of restamp) {
            await restampMigration(tx, m.version, m.checksum);
          }
        });
      }
      const applied: string[] = [];
      for (const m of migrations) {
        if (done.has(m.version)) continue;
        await runFile(conn, `migrations/${m.name}`, async (tx) => {
          await recordMigration(tx, m);
          await runSqlText(tx, m.text);
        });
        applied.push(m.name);
      }
      await runFile(conn, 'sql/', async (tx) => {
        for (const r of repeatable) {
          try {
            await runSqlText(tx, r.text);
          } catch (err) {
            throw new EspfError('ESPF_MIGRATION_FAILED', `sql/${r.name}: ${oneLine(err)}`, { cause: err });
          }
        }
      });
      return {
        applied, alreadyApplied: migrations.length - applied.length, repeatable: repeatable.map((r) => r.name),
        keptRules: await changedBuiltinRules(conn),
      };
    } finally {
      await unlockMigrate(conn).catch(() => undefined);
    }
  });
}

/** How often a file that gave up waiting for a lock (lock_timeout) is tried again. */
const LOCK_TIMEOUT_TRIES = 5;

function isLockTimeout(err: unknown): boolean {
  for (let e: unknown = err; e; e = (e as { cause?: unknown }).cause) {
    if ((e as { code?: unknown }).code === '55P03') return true;
  }
  return false;
}

/**
 * One file in its own transaction. A file that sets lock_timeout gives up when
 * billing writes hold a lock it needs (rather than queueing every later write
 * behind it) and is tried again, a few times, a moment later.
 */
async function runFile(conn: Connection, label: string, fn: (tx: Parameters<Parameters<Connection['tx']>[0]>[0]) => Promise<void>) {
  for (let attempt = 1; ; attempt++) {
    try {
      await conn.tx(fn);
      return;
    } catch (err) {
      if (isLockTimeout(err) && attempt < LOCK_TIMEOUT_TRIES) {
        await new Promise((r) => setTimeout(r, 500 * attempt));
        continue;
      }
      if (err instanceof EspfError) throw err;
      const hint = isLockTimeout(err) ? ` (gave up after ${attempt} tries: a long transaction holds a lock it needs; try again)` : '';
      throw new EspfError('ESPF_MIGRATION_FAILED', `${label}: ${oneLine(err)}${hint}`, { cause: err });
    }
  }
}
