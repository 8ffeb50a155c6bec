import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseReleasedSums, sha256, statementLines, statementSum } from '../../src/migrate/checksum.ts';
import { MIGRATIONS_DIR } from '../../src/paths.ts';

describe('migration checksums (src/migrate/checksum.ts)', () => {
  it('leaves out comment-only lines and blank lines, nothing else', () => {
    const text = '-- head\n\nCREATE TABLE t (\n  x int, -- kept: after a statement\n   \t-- indented\n\r\n  s text DEFAULT \'--\'\n);\r\n-- last';
    assert.equal(statementLines(text), 'CREATE TABLE t (\n  x int, -- kept: after a statement\n  s text DEFAULT \'--\'\n);\r\n');
    assert.equal(statementSum(text), statementSum(text.replace('-- head', '-- reworded').replace('-- last', '')));
    assert.notEqual(statementSum(text), statementSum(text.replace('kept: after', 'changed: after')));
    assert.notEqual(statementSum(text), statementSum(text.replace('x int', 'x bigint')));
    assert.match(statementSum(text), /^sql-sha256:[0-9a-f]{64}$/);
  });

  it('is the sum of the shell pipeline docs/dba.md gives, for every migration', async function () {
    if (spawnSync('sh', ['-c', 'command -v sha256sum']).status !== 0) this.skip();
    for (const name of (await readdir(MIGRATIONS_DIR)).filter((n) => n.endsWith('.sql'))) {
      const f = path.join(MIGRATIONS_DIR, name);
      const sh = spawnSync('sh', ['-c', `LC_ALL=C grep -Ev '^[[:space:]]*(--.*)?$' "${f}" | sha256sum | cut -d' ' -f1`], { encoding: 'utf8' });
      assert.equal(`sql-sha256:${sh.stdout.trim()}`, statementSum(await readFile(f, 'utf8')), name);
    }
  });

  it('migrations/released.sha256 reads; each line has the statements of the current file and another whole sum', async () => {
    const released = parseReleasedSums(await readFile(path.join(MIGRATIONS_DIR, 'released.sha256'), 'utf8'));
    assert.ok(released.size > 0);
    for (const [name, versions] of released) {
      const text = await readFile(path.join(MIGRATIONS_DIR, name), 'utf8');
      for (const [whole, statements] of versions) {
        assert.notEqual(whole, sha256(text), `${name}: the current file needs no line`);
        assert.equal(statements, statementSum(text), `${name}: its statements changed since that release`);
      }
    }
    assert.throws(() => parseReleasedSums(`${'a'.repeat(64)}  migrations/0002_espf.sql\n`), /released\.sha256/);
  });
});
