import assert from 'node:assert/strict';
import { CircuitBreaker, verdictOf } from '../../src/delivery/breaker.ts';

const settings = { failures: 3, probeDelayMs: 1000, probeMaxDelayMs: 5000 };

describe('circuit breaker (pure)', () => {
  it('classifies attempts: 2xx ok; 408, 429, 5xx and no answer down; other statuses refuse one event', () => {
    assert.equal(verdictOf({ ok: true, status: 200 }), 'ok');
    assert.equal(verdictOf({ ok: true, status: 204 }), 'ok');
    for (const s of [500, 502, 503, 504, 408, 429, null]) assert.equal(verdictOf({ ok: false, status: s }), 'down', String(s));
    for (const s of [400, 401, 403, 404, 409, 410, 422, 301, 302, 100]) assert.equal(verdictOf({ ok: false, status: s }), 'refused', String(s));
  });

  it('goes down after the configured number of consecutive failures, not before', () => {
    const b = new CircuitBreaker(settings, 0);
    assert.equal(b.record('down', 10), null);
    assert.equal(b.record('down', 20), null);
    assert.equal(b.up, true);
    assert.equal(b.record('down', 30), 'down');
    assert.equal(b.up, false);
    assert.equal(b.since, 30);
    assert.equal(b.failuresAtChange, 3);
    assert.equal(b.nextProbeAt, 1030);
  });

  it('a success or a refusal in between starts the count again: a 4xx never opens it', () => {
    const b = new CircuitBreaker(settings, 0);
    b.record('down', 1);
    b.record('down', 2);
    b.record('ok', 3);
    b.record('down', 4);
    b.record('down', 5);
    b.record('refused', 6);
    b.record('down', 7);
    b.record('down', 8);
    assert.equal(b.up, true);
    for (let i = 0; i < 100; i++) assert.equal(b.record('refused', 10 + i), null);
    assert.equal(b.up, true);
  });

  it('down: one probe at a time, at an interval that doubles up to the maximum', () => {
    const b = new CircuitBreaker(settings, 0);
    for (let i = 0; i < 3; i++) b.record('down', 0);
    assert.equal(b.canProbe(999), false);
    assert.equal(b.probeWaitMs(999), 1);
    assert.equal(b.canProbe(1000), true);
    b.startProbe();
    assert.equal(b.canProbe(5000), false, 'never two probes at once');
    assert.equal(b.probeWaitMs(5000), Infinity);
    const gaps: number[] = [];
    let now = 1000;
    for (let i = 0; i < 6; i++) {
      now += 50;                         // the probe's answer
      assert.equal(b.record('down', now, true), null);
      gaps.push(b.nextProbeAt - now);
      now = b.nextProbeAt;
      assert.ok(b.canProbe(now));
      b.startProbe();
    }
    assert.deepEqual(gaps, [2000, 4000, 5000, 5000, 5000, 5000]);
    assert.equal(b.probes, 7);
  });

  it('a request already on the wire that fails while down does not move the probe', () => {
    const b = new CircuitBreaker(settings, 0);
    for (let i = 0; i < 3; i++) b.record('down', 100);
    assert.equal(b.record('down', 500), null);
    assert.equal(b.nextProbeAt, 1100);
  });

  it('a probe that succeeds, or is refused (the target answers), brings it up; failures count from zero again', () => {
    for (const v of ['ok', 'refused'] as const) {
      const b = new CircuitBreaker(settings, 0);
      for (let i = 0; i < 3; i++) b.record('down', 0);
      b.startProbe();
      assert.equal(b.record(v, 1200, true), 'up');
      assert.equal(b.up, true);
      assert.equal(b.since, 1200);
      assert.equal(b.probing, false);
      assert.equal(b.record('down', 1300), null);
      assert.equal(b.record('down', 1400), null);
      assert.equal(b.record('down', 1500), 'down');
      assert.equal(b.nextProbeAt, 2500, 'the probe interval starts again from probeDelayMs');
    }
  });

  it('new settings apply from the next failure', () => {
    const b = new CircuitBreaker(settings, 0);
    b.configure({ failures: 1, probeDelayMs: 200, probeMaxDelayMs: 300 });
    assert.equal(b.record('down', 0), 'down');
    assert.equal(b.nextProbeAt, 200);
    b.startProbe();
    b.record('down', 200, true);
    assert.equal(b.nextProbeAt, 500);
  });
});

describe('circuit breaker restored down at start (pure)', () => {
  it('stays down, first probe after probe_delay, counts the probes already sent', () => {
    const b = new CircuitBreaker(settings, 0);
    b.restoreDown(5000, 1000, 4);
    assert.equal(b.up, false);
    assert.equal(b.since, 1000);
    assert.equal(b.probes, 4);
    assert.equal(b.canProbe(5999), false);
    assert.equal(b.canProbe(6000), true);
    b.startProbe();
    assert.equal(b.record('ok', 6100, true), 'up');
  });
});
