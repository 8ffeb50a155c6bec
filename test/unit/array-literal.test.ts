// src/db/array-literal.ts: the literals of espf.record_deliveries' columns
// (test/record-arrays.test.ts reads them back through PostgreSQL).
import assert from 'node:assert/strict';
import { numberArray, textArray } from '../../src/db/array-literal.ts';
import { literalElements } from '../support/record-call.ts';

describe('array literals of a batch column', () => {
  it('numbers: one join, NULL for null; not finite is refused', () => {
    assert.equal(numberArray([1, null, 2.5, 1765000000123]), '{1,NULL,2.5,1765000000123}');
    assert.equal(numberArray([]), '{}');
    assert.throws(() => numberArray([1, Number.NaN]), RangeError);
    assert.throws(() => numberArray([Infinity]), RangeError);
  });

  it('text: bare when array input reads it back the same, else quoted and escaped', () => {
    const values = ['EventSender', 'a:12', '0/16B3748', '', 'NULL', 'null', ' x', 'a,b', '{b}', 'q"q', 'b\\s', 'ü', null];
    for (const recur of [false, true]) {
      const literal = textArray(values, recur);
      assert.equal(literal, '{EventSender,a:12,0/16B3748,"","NULL","null"," x","a,b","{b}","q\\"q","b\\\\s",ü,NULL}');
      assert.deepEqual(literalElements(literal), values);
    }
  });
});
