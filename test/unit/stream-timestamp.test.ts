// src/stream/timestamp.ts reads espf.events.created_at without regular
// expressions: it must give the Date pg's own parser gives, for every text.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { timestamptzParser } from '../../src/stream/timestamp.ts';

const require = createRequire(import.meta.url);
const pgParser = (require('pg') as { types: { getTypeParser(oid: number): (s: string) => unknown } }).types.getTypeParser(1184);

describe('unit: created_at from the stream (src/stream/timestamp.ts)', function () {
  const calls: string[] = [];
  const fallback = (s: string) => { calls.push(s); return pgParser(s); };
  const parse = timestamptzParser(fallback);
  const same = (s: string) => {
    const got = parse(s), want = pgParser(s);
    assert.ok(got instanceof Date && want instanceof Date, s);
    assert.equal(got.getTime(), want.getTime(), s);
  };

  it('gives the Date of pg\'s parser for the UTC form, every length of fraction, without the fallback', () => {
    calls.length = 0;
    for (const s of ['2026-12-07 05:08:02+00', '2026-12-07 05:08:02.1+00', '2026-12-07 05:08:02.29+00', '2026-12-07 05:08:02.001+00',
      '2026-12-07 05:08:02.0015+00', '2026-12-07 23:59:59.99999+00', '2026-12-07 23:59:59.999999+00', '1999-01-01 00:00:00.000001+00',
      '9999-12-31 23:59:59.999999+00', '2024-02-29 12:00:00.5+00']) same(s);
    // a random sample, the fraction's float arithmetic included
    let seed = 7;
    const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) % 2147483648) % n;
    const two = (n: number) => String(n).padStart(2, '0');
    for (let i = 0; i < 5000; i++) {
      const frac = rnd(7) === 0 ? '' : `.${String(rnd(1_000_000)).padStart(6, '0').slice(0, 1 + rnd(6))}`;
      same(`${1000 + rnd(9000)}-${two(1 + rnd(12))}-${two(1 + rnd(28))} ${two(rnd(24))}:${two(rnd(60))}:${two(rnd(60))}${frac}+00`);
    }
    assert.deepEqual(calls, []);
  });

  it('gives the events of one transaction (one created_at text) one Date', () => {
    const a = parse('2026-12-07 05:08:02.123456+00'), b = parse('2026-12-07 05:08:02.123456+00');
    assert.equal(a, b);
    const c = parse('2026-12-07 05:08:02.123457+00');
    assert.notEqual(c, a);
    assert.equal((c as Date).getTime(), (a as Date).getTime(), 'the same millisecond, another Date');
  });

  it('hands every other form to pg\'s parser', () => {
    calls.length = 0;
    const others = ['2026-12-07 05:08:02.123+01', '2026-12-07 05:08:02-03:30', '2026-12-07 05:08:02+05:45:10', '0050-01-01 00:00:00+00',
      '0044-03-15 12:00:00+00 BC', 'infinity', '-infinity', '12026-12-07 05:08:02+00', '2026-12-07T05:08:02+00', '2026-12-07 05:08:02.+00',
      '2026-12-07 05:08:02.1234567+00', '2026-1x-07 05:08:02+00'];
    for (const s of others) assert.deepEqual(parse(s), pgParser(s), s);
    assert.deepEqual(calls, others);
  });
});
