import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ROOT } from '../../src/paths.ts';

/**
 * The node flags on the first line of bin/espf.js (docs/operations.md,
 * "Memory"): the memory of `espf run` depends on them, and the old-space
 * limit is also the largest heap a transaction of a million events has.
 */
function firstLineFlags(): string[] {
  const first = readFileSync(path.join(ROOT, 'bin', 'espf.js'), 'utf8').split('\n', 1)[0]!;
  const m = /^#!\/usr\/bin\/env -S node((?: \S+)+)$/.exec(first);
  assert.ok(m, `bin/espf.js must start with '#!/usr/bin/env -S node <flags>', not '${first}'`);
  return m[1]!.trim().split(' ');
}

function flagValue(flags: readonly string[], name: string): number | undefined {
  const f = flags.find((x) => x.startsWith(`${name}=`));
  return f === undefined ? undefined : Number(f.slice(name.length + 1));
}

describe('bin/espf.js node flags', () => {
  it('keeps the old-space limit at 224 MB or more, growing by a tenth, and a young generation of at most 2 x 8 MB', () => {
    const flags = firstLineFlags();
    const oldSpace = flagValue(flags, '--max-old-space-size');
    assert.ok(oldSpace !== undefined && oldSpace >= 224, `--max-old-space-size must stay >= 224 (a million-event transaction fits in it), got ${String(oldSpace)}`);
    const semi = flagValue(flags, '--max-semi-space-size');
    assert.ok(semi !== undefined && semi <= 8, `--max-semi-space-size must be set to 8 or less, got ${String(semi)}`);
    assert.ok(flags.includes('--liftoff-only'), 'WebAssembly stays in Liftoff (--liftoff-only)');
    const growing = flagValue(flags, '--heap-growing-percent');
    assert.ok(growing !== undefined && growing > 0 && growing <= 10, `--heap-growing-percent must be set to 1-10, got ${String(growing)}`);
  });

  it('are flags this node accepts', () => {
    const r = spawnSync(process.execPath, [...firstLineFlags(), '-e', 'process.exit(0)'], { encoding: 'utf8' });
    assert.equal(r.status, 0, `node ${firstLineFlags().join(' ')} refused: ${r.stderr}`);
    assert.equal(r.stderr, '', `node warned about the flags: ${r.stderr}`);
  });
});
