// Pure unit tests (no database): LSN text ⇄ bigint.
import assert from 'node:assert/strict';
import { formatLsn, parseLsn } from '../../src/stream/lsn.ts';

describe('unit: LSN arithmetic', function () {
  it('parses both spellings to the same number and orders across the 32-bit boundary', () => {
    assert.equal(parseLsn('0/1526510'), parseLsn('00000000/01526510'));
    assert.equal(parseLsn('0/1526510'), 0x1526510n);
    assert.equal(parseLsn('1/0'), 1n << 32n);
    assert.ok(parseLsn('1/0') > parseLsn('0/FFFFFFFF'));
    assert.equal(parseLsn('0/FFFFFFFF') + 1n, parseLsn('1/0'));
  });

  it('formats as PostgreSQL does (upper-case hex, no padding) and round-trips', () => {
    assert.equal(formatLsn(0n), '0/0');
    assert.equal(formatLsn(0x1526510n), '0/1526510');
    assert.equal(formatLsn((0xabn << 32n) | 0xcdefn), 'AB/CDEF');
    for (const s of ['0/0', '16/B374D848', 'FFFFFFFF/FFFFFFFF']) assert.equal(formatLsn(parseLsn(s)), s);
  });

  it('refuses what is not an LSN', () => {
    assert.throws(() => parseLsn('12345'), /not an LSN/);
  });
});
