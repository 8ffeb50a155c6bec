import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from '../../src/paths.ts';

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
