import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from '../../src/paths.ts';

/**
 * The `espf` command as the tests start it: the TypeScript sources through tsx
 * (bin/espf.js runs the compiled dist/, which `make test` does not build).
 */
export function spawnEspf(args: readonly string[], opts: { env?: Record<string, string | undefined>; stdio?: SpawnOptions['stdio']; nodeArgs?: readonly string[] } = {}): ChildProcess {
  const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
  return spawn(process.execPath, [...(opts.nodeArgs ?? []), '--import', 'tsx', path.join(ROOT, 'src/cli/entry.ts'), ...args], {
    cwd: ROOT, env, stdio: opts.stdio ?? ['ignore', 'pipe', 'pipe'],
  });
}

export interface EspfRun { code: number | null; stdout: string; stderr: string; ms: number }

/** Runs one `espf …` command to its end (killed after `timeoutMs`) and collects what it printed. */
export function espf(args: readonly string[], env: Record<string, string | undefined> = {}, timeoutMs = 60_000): Promise<EspfRun> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawnEspf(args, { env });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout!.setEncoding('utf8').on('data', (s: string) => { stdout += s; });
    child.stderr!.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: performance.now() - started });
    });
  });
}

/** A run as text, for assertion messages. */
export function show(r: EspfRun): string {
  return `exit ${r.code} after ${Math.round(r.ms)} ms\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
}

/** The Node.js options on bin/espf.js's first line: what `espf run` is started with in production (the heap limit). */
export function productionNodeArgs(): string[] {
  const first = readFileSync(path.join(ROOT, 'bin/espf.js'), 'utf8').split('\n')[0] ?? '';
  const m = /^#!\/usr\/bin\/env -S node( .*)?$/.exec(first);
  if (!m) throw new Error(`bin/espf.js does not start with "#!/usr/bin/env -S node …": ${first}`);
  return (m[1] ?? '').trim().split(/\s+/).filter(Boolean);
}
