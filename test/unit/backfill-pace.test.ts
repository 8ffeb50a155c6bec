// Pure unit tests (no database): the pace of `espf backfill` (src/rules/backfill-pace.ts).
import assert from 'node:assert/strict';
import {
  BUSY_SESSIONS, DUTY_DECREASE, DUTY_INCREASE, DUTY_MIN, DUTY_START, initialPace, MIN_BATCH, nextPace, type BatchSample, type Pace, type PaceState,
} from '../../src/rules/backfill-pace.ts';

/** A batch whose locking statement took a tenth of it (no wait), or `lockMs`. */
const batch = (rows: number, ms: number, atMs = 0, activeSessions = 0, lockMs = ms / 10): BatchSample => ({ rows, ms, lockMs, atMs, activeSessions });

/**
 * Runs batches through a pace; each batch takes `msPerRow` a row. A batch's
 * locking statement takes a tenth of it, or, for a batch whose ms a row is in
 * `waited`, all but a tenth (it waited for a row lock).
 */
function run(pace: Pace, batchSize: number, msPerRow: readonly number[], sessions = 0, waited: ReadonlySet<number> = new Set()): PaceState[] {
  const states: PaceState[] = [];
  let s = initialPace(pace, batchSize);
  let at = 0;
  for (const m of msPerRow) {
    const ms = s.batchSize * m;
    at += s.pauseMs + ms;
    s = nextPace(pace, s, batch(s.batchSize, ms, at, sessions, waited.has(m) ? ms * 0.9 : ms / 10), batchSize);
    states.push(s);
  }
  return states;
}

describe('unit: backfill pace', function () {
  it('fast: the batch size, no pause', () => {
    const states = run({ kind: 'fast' }, 1000, [0.02, 0.5, 3]);
    for (const s of states) {
      assert.equal(s.batchSize, 1000);
      assert.equal(s.pauseMs, 0);
      assert.equal(s.reason, 'full speed (--fast)');
    }
  });

  it('rate: batches of a tenth of a second of rows, each started when the previous one\'s rows are due; no burst after a late one', () => {
    const pace: Pace = { kind: 'rate', rowsPerS: 2000 };
    let s = initialPace(pace, 1000);
    assert.equal(s.batchSize, 200);
    assert.equal(s.reason, 'paced at --rate 2000');
    // 200 rows in 10 ms: the next 200 are due at 100 ms, so a pause of 90 ms.
    s = nextPace(pace, s, batch(200, 10, 10), 1000);
    assert.equal(s.pauseMs, 90);
    // A batch of 150 ms, started at 100 ms: late (its rows were due at 200 ms), no pause.
    s = nextPace(pace, s, batch(200, 150, 250), 1000);
    assert.equal(s.pauseMs, 0);
    // The next one, started at 250 ms after a stall, is not followed by a burst: its rows are due at 350 ms.
    s = nextPace(pace, s, batch(200, 10, 260), 1000);
    assert.equal(s.pauseMs, 90);
    // A rate below ten rows a second still takes one row a batch; the batch size bounds it from above.
    assert.equal(initialPace({ kind: 'rate', rowsPerS: 3 }, 1000).batchSize, 1);
    assert.equal(initialPace({ kind: 'rate', rowsPerS: 100_000 }, 500).batchSize, 500);
  });

  it('rate: N rows per second over a long run whatever the batches take', () => {
    const pace: Pace = { kind: 'rate', rowsPerS: 500 };
    let s = initialPace(pace, 1000);
    let at = 0;
    for (let i = 0; i < 200; i++) {
      const ms = 1 + (i % 7) * 3;  // batches of 1 to 19 ms
      at += s.pauseMs + ms;
      s = nextPace(pace, s, batch(s.batchSize, ms, at), 1000);
    }
    const nextStart = at + s.pauseMs;
    assert.equal(s.rows, 200 * 50);
    assert.ok(Math.abs(s.rows / (nextStart / 1000) - 500) < 1, `${s.rows} rows by ${nextStart} ms`);
  });

  it('yield: full speed while the batches stay as fast as idle', () => {
    const states = run({ kind: 'yield' }, 1000, Array(40).fill(0.02));
    assert.equal(states[0]!.duty, DUTY_START + DUTY_INCREASE);
    const last = states.at(-1)!;
    assert.equal(last.duty, 1);
    assert.equal(last.pauseMs, 0);
    assert.equal(last.batchSize, 1000);
    assert.match(last.reason, /^full speed: billing does not slow it \(batch latency \+0% over idle\)$/);
  });

  it('yield: batches 50% slower than idle cut the share of time it works multiplicatively, down to the floor, and pause', () => {
    const states = run({ kind: 'yield' }, 1000, [0.02, 0.03, 0.03, 0.03, ...Array(20).fill(0.03)], 1);
    assert.equal(states[0]!.duty, DUTY_START + DUTY_INCREASE);
    assert.ok(Math.abs(states[1]!.duty - (DUTY_START + DUTY_INCREASE) * DUTY_DECREASE) < 1e-9);
    assert.ok(Math.abs(states[1]!.slowdown - 0.5) < 1e-9);
    const last = states.at(-1)!;
    assert.equal(last.duty, DUTY_MIN);
    // Working a third of the time: a 30 ms batch is followed by 60 ms of pause.
    assert.ok(Math.abs(last.pauseMs - 30 * (1 - DUTY_MIN) / DUTY_MIN) < 1e-9);
    assert.ok(Math.abs(last.pauseMs - 60) < 1e-9);
    assert.equal(last.batchSize, 1000, 'slower, not waiting for locks: the batch size stays');
    assert.equal(last.reason, 'yielding: batch latency +50% over idle, 1 other session active; working 33% of the time');
  });

  it('yield: BUSY_SESSIONS other sessions at work count as billing busy, even when the baseline was never idle', () => {
    const busy = run({ kind: 'yield' }, 1000, Array(10).fill(0.02), BUSY_SESSIONS);
    assert.equal(busy.at(-1)!.duty, DUTY_MIN);
    assert.equal(busy.at(-1)!.reason, `yielding: batch latency +0% over idle, ${BUSY_SESSIONS} other sessions active; working 33% of the time`);
    for (const sessions of [BUSY_SESSIONS - 1, -1]) {  // fewer, or not visible to this role: the latency alone decides
      const quiet = run({ kind: 'yield' }, 1000, Array(30).fill(0.02), sessions);
      assert.equal(quiet.at(-1)!.duty, 1, `${sessions} sessions`);
    }
  });

  it('yield: slightly slower batches (+20%) do not count as billing feeling it', () => {
    const states = run({ kind: 'yield' }, 1000, [0.02, ...Array(10).fill(0.024)]);
    assert.ok(states.every((s, i) => i === 0 || s.duty > states[i - 1]!.duty || s.duty === 1));
  });

  it('yield: a batch that waited for row locks halves the batch size (down to MIN_BATCH); batches that did not wait double it back', () => {
    const states = run({ kind: 'yield' }, 1000, [0.02, 0.02, 0.5, 0.5, 0.5, 0.5, 0.5], 0, new Set([0.5]));
    assert.deepEqual(states.map((s) => s.batchSize), [1000, 1000, 500, 250, 125, 62, MIN_BATCH]);
    assert.match(states.at(-1)!.reason, /^yielding: batch latency \+2400% over idle; working \d+% of the time; it waited for row locks: batches of 50 rows$/);
    assert.deepEqual([...states.at(-1)!.baselineMsPerRow.keys()], [1000], 'a batch that waited sets no baseline');
    // Batches that do not wait grow it back, slow (a loaded machine) or not.
    let s = states.at(-1)!;
    const sizes: number[] = [];
    for (const m of [0.05, 0.05, 0.02, 0.02, 0.02, 0.02]) {
      s = nextPace({ kind: 'yield' }, s, batch(s.batchSize, s.batchSize * m), 1000);
      sizes.push(s.batchSize);
    }
    assert.deepEqual(sizes, [100, 200, 400, 800, 1000, 1000]);
    assert.match(s.reason, /^yielding: .*; working \d+% of the time$/);
    // A backfill whose batch size is below MIN_BATCH keeps it.
    assert.equal(run({ kind: 'yield' }, 10, [0.02, 1], 0, new Set([1])).at(-1)!.batchSize, 10);
  });

  it('yield: a slow batch that did not wait for locks (a loaded machine) keeps the batch size', () => {
    const states = run({ kind: 'yield' }, 1000, [0.02, 0.5, 0.5]);
    assert.deepEqual(states.map((s) => s.batchSize), [1000, 1000, 1000]);
    assert.equal(states.at(-1)!.duty, DUTY_MIN);
  });

  it('yield: the last, short batch and the empty one change nothing but the rows done', () => {
    const s = run({ kind: 'yield' }, 1000, [0.02, 0.05]).at(-1)!;
    for (const b of [batch(10, 5), batch(0, 1)]) {
      const same = nextPace({ kind: 'yield' }, s, b, 1000);
      assert.deepEqual({ ...same, rows: 0 }, { ...s, rows: 0, pauseMs: 0 });
      assert.equal(same.rows, s.rows + b.rows);
    }
  });
});
