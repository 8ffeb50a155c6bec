// Pure unit tests (no database: a stand-in pool): the record stage's batches and promises of durability.
import assert from 'node:assert/strict';
import type { Db } from '../../src/db/connect.ts';
import type { Item } from '../../src/delivery/item.ts';
import { ResultsWriter, type Outcome } from '../../src/delivery/results-writer.ts';
import type { Logger } from '../../src/log/logger.ts';
import { recordsOfCall } from '../support/record-call.ts';

const silent = { warn() {}, info() {}, debug() {}, error() {} } as unknown as Logger;

function item(i: number, fresh?: boolean): Item {
  return {
    event: { i_event: i, event_type: 'Account/Blocked', variables: {}, source_i_event: null },
    handler: 'H', orderKey: `a:${i}`, iAccount: i, commitLsn: null, committedAt: null, resumed: null, ...(fresh ? { fresh } : {}),
  };
}
const outcome = (state: Outcome['state'], attempts = 0): Outcome => ({ state, attempts, urlsDone: 0, firstAttemptAt: null, nextAttemptAt: null });

/** A pool whose writes wait for `commit()` (or fail with `fail()`), keeping the rows of each. */
function pool() {
  const writes: { rows: { i_event: number; state: string; attempts: number; fresh: boolean }[]; done: (err?: Error) => void }[] = [];
  const db = {
    query: (q: { format(f: unknown): { values: unknown[] } }) => new Promise<unknown[]>((resolve, reject) => {
      const { values } = q.format({ escapeIdentifier: (s: string) => s, formatValue: (value: unknown) => ({ placeholder: '?', value }) });
      // espf.record_deliveries answers with the outcomes it dropped (none here).
      writes.push({ rows: recordsOfCall(values) as never, done: (err) => (err ? reject(err) : resolve([{ stale: [] }])) });
    }),
  } as unknown as Db;
  return { db, writes };
}
const tick = () => new Promise((r) => setImmediate(r));

describe('results writer (pure)', () => {
  it('the first record of a fresh item is fresh, later ones not; a batch that failed is written again with none fresh', async () => {
    const { db, writes } = pool();
    const warned: string[] = [];
    const log = { ...silent, warn: (_: unknown, m: string) => warned.push(m) } as unknown as Logger;
    const w = new ResultsWriter(db, 'main', log);
    const [a, b, c] = [item(1, true), item(2, true), item(3)];
    w.record(a, outcome('PENDING'));
    w.record(a, outcome('DELIVERED', 1));   // replaces the PENDING in the same batch: still the row's first write
    w.record(b, outcome('PENDING'));
    w.record(c, outcome('PENDING'));        // read back from the table (not fresh)
    await tick();
    assert.deepEqual(writes[0]!.rows.map((r) => [r.i_event, r.state, r.fresh]), [[1, 'DELIVERED', true], [2, 'PENDING', true], [3, 'PENDING', false]]);
    w.record(b, outcome('DELIVERED', 1));
    // Its row existed after all: written again at once (no wait, no warning), with no record fresh.
    writes[0]!.done(Object.assign(new Error('duplicate key value violates unique constraint "event_deliveries_pkey"'), { code: '23505' }));
    await tick(); await tick();
    assert.equal(writes.length, 2);
    assert.deepEqual(writes[1]!.rows.map((r) => [r.i_event, r.state, r.fresh]), [[2, 'DELIVERED', false], [1, 'DELIVERED', false], [3, 'PENDING', false]]);
    assert.deepEqual(warned, []);
    writes[1]!.done();
  });

  it('records of one batch share one promise, resolved when the batch commits; its items are reported durable', async () => {
    const { db, writes } = pool();
    const durable: Item[][] = [];
    const w = new ResultsWriter(db, 'main', silent, (items) => durable.push([...items]));
    const [a, b] = [item(1), item(2)];
    const pa = w.record(a, outcome('PENDING'));
    const pb = w.record(b, outcome('DELIVERED', 1));
    assert.equal(pa, pb, 'one promise per batch');
    let resolved = false;
    void pa.then(() => { resolved = true; });
    await tick();
    assert.equal(writes.length, 1);
    assert.deepEqual(writes[0]!.rows.map((r) => [r.i_event, r.state, r.attempts]), [[1, 'PENDING', 0], [2, 'DELIVERED', 1]]);
    const pc = w.record(item(3), outcome('PENDING'));
    assert.notEqual(pc, pa, 'the next batch gathers meanwhile');
    assert.equal(resolved, false);
    writes[0]!.done();
    await pa;
    assert.deepEqual(durable, [[a, b]]);
  });

  it('a newer record of a delivery replaces an older one in its batch, but a PENDING never replaces an outcome', async () => {
    const { db, writes } = pool();
    const w = new ResultsWriter(db, 'main', silent);
    const a = item(1);
    w.record(a, outcome('RETRY', 1));
    w.record(a, outcome('PENDING', 1));
    w.record(item(2), outcome('PENDING'));
    w.record(item(2), outcome('FAILED', 3));
    await tick();
    assert.deepEqual(writes[0]!.rows.map((r) => [r.i_event, r.state]), [[1, 'RETRY'], [2, 'FAILED']]);
  });

  it('an item whose newer record is still to be written is reported durable with that one', async () => {
    const { db, writes } = pool();
    const durable: Item[][] = [];
    const w = new ResultsWriter(db, 'main', silent, (items) => durable.push([...items]));
    const a = item(1);
    w.record(a, outcome('RETRY', 1));
    await tick();
    w.record(a, outcome('DELIVERED', 2));
    writes[0]!.done();
    await tick();
    assert.deepEqual(durable, [[]]);
    await tick();
    writes[1]!.done();
    await tick();
    assert.deepEqual(durable, [[], [a]]);
  });

  it('a failed batch goes back under the newer records; the promises of both resolve when it commits', async () => {
    const { db, writes } = pool();
    const durable: Item[][] = [];
    const w = new ResultsWriter(db, 'main', silent, (items) => durable.push([...items]));
    const [a, b] = [item(1), item(2)];
    const first = w.record(a, outcome('RETRY', 1));
    await tick();
    const second = w.record(b, outcome('PENDING'));
    writes[0]!.done(new Error('connection lost'));
    let settled = 0;
    void first.then(() => settled++);
    await new Promise((r) => setTimeout(r, 150)); // the backoff's first wait is 100 ms
    assert.equal(writes.length, 2);
    assert.deepEqual(writes[1]!.rows.map((r) => r.i_event).sort(), [1, 2]);
    assert.equal(settled, 0);
    writes[1]!.done();
    await Promise.all([first, second]);
    assert.deepEqual(durable.flat().sort((x, y) => x.event.i_event - y.event.i_event), [a, b]);
  });
});
