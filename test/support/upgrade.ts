import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { connect, type Db } from '../../src/db/connect.ts';
import { migrate } from '../../src/migrate/migrate.ts';
import { ROOT } from '../../src/paths.ts';
import { createTestDatabase } from './database.ts';

/**
 * migrations/ and sql/ as they were just before `migration` was added (HEAD
 * while it is not committed yet), without it and without the sql/ files it
 * came with: the previous release, for upgrade tests. Null outside a git checkout.
 */
export async function previousRelease(migration: string, sqlFiles: readonly string[] = []): Promise<{ migrations: string; repeatable: string } | null> {
  const git = (...args: string[]) => spawnSync('git', ['-C', ROOT, ...args], { encoding: 'utf8' });
  if (git('rev-parse', '--git-dir').status !== 0) return null;
  const added = git('log', '--diff-filter=A', '--format=%H', '-1', '--', `migrations/${migration}`).stdout.trim();
  const rev = added ? `${added}^` : 'HEAD';
  const dir = await mkdtemp(path.join(os.tmpdir(), 'espf-prev-'));
  const tar = spawnSync('sh', ['-c', `git -C "${ROOT}" archive ${rev} migrations sql | tar -x -C "${dir}"`], { encoding: 'utf8' });
  if (tar.status !== 0) throw new Error(`git archive ${rev}: ${tar.stderr}`);
  await rm(path.join(dir, 'migrations', migration), { force: true });
  for (const f of sqlFiles) await rm(path.join(dir, 'sql', f), { force: true });
  return { migrations: path.join(dir, 'migrations'), repeatable: path.join(dir, 'sql') };
}

export interface ReleasedCode {
  readonly rev: string;
  readonly migrations: string;
  readonly repeatable: string;
  /** The `migrate` of src/migrate/migrate.ts as it was at `rev`. */
  readonly migrate: (db: unknown, dirs?: { migrations?: string; repeatable?: string }) => Promise<{ applied: readonly string[] }>;
  remove(): Promise<void>;
}

/**
 * The code and SQL (src/, migrations/, sql/) of the release before the last change
 * of `file` (HEAD while `file` has uncommitted changes), to migrate a database as
 * that release did. Unpacked under .espf/ of the checkout so that its imports find
 * node_modules. Null outside a git checkout.
 */
export async function releaseBeforeChangeOf(file: string): Promise<ReleasedCode | null> {
  const git = (...args: string[]) => spawnSync('git', ['-C', ROOT, ...args], { encoding: 'utf8' });
  if (git('rev-parse', '--git-dir').status !== 0) return null;
  const changed = git('diff', '--quiet', 'HEAD', '--', file).status !== 0;
  const last = git('log', '--format=%H', '-1', '--', file).stdout.trim();
  const rev = changed || !last ? git('rev-parse', 'HEAD').stdout.trim() : git('rev-parse', `${last}^`).stdout.trim();
  await mkdir(path.join(ROOT, '.espf'), { recursive: true });
  const dir = await mkdtemp(path.join(ROOT, '.espf', 'release-'));
  const tar = spawnSync('sh', ['-c', `git -C "${ROOT}" archive ${rev} src migrations sql | tar -x -C "${dir}"`], { encoding: 'utf8' });
  if (tar.status !== 0) throw new Error(`git archive ${rev}: ${tar.stderr}`);
  const mod = await import(pathToFileURL(path.join(dir, 'src', 'migrate', 'migrate.ts')).href) as Pick<ReleasedCode, 'migrate'>;
  return {
    rev, migrations: path.join(dir, 'migrations'), repeatable: path.join(dir, 'sql'), migrate: mod.migrate,
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

/**
 * An empty test database migrated as the previous release (`previousRelease`)
 * left it, with a pool on it: `dispose()` closes the pool and drops the
 * database. Null outside a git checkout.
 */
export async function databaseAtPreviousRelease(migration: string, sqlFiles: readonly string[] = []): Promise<{ db: Db; dispose(): Promise<void> } | null> {
  const prev = await previousRelease(migration, sqlFiles);
  if (!prev) return null;
  const e = await createTestDatabase({ empty: true });
  const db = connect({ connectionString: e.url, poolSize: 2 });
  const dispose = async () => {
    await db.dispose();
    await e.drop();
  };
  try {
    await migrate(db, prev);
  } catch (err) {
    await dispose();
    throw err;
  }
  return { db, dispose };
}
