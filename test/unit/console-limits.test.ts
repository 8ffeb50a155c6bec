// Pure unit tests (no database): the console's login limiter and client address (src/console/auth.ts).
import assert from 'node:assert/strict';
import { clientAddress, FIRST_DELAY_MS, LoginLimiter } from '../../src/console/auth.ts';

describe('unit: console login limiting', function () {
  const W = 15 * 60_000;

  it('counts a try when it begins; after the limit each further failure doubles the wait, up to the window; success forgives', () => {
    const l = new LoginLimiter();
    const t0 = 1_000_000;
    for (let i = 0; i < 3; i++) { assert.equal(l.blockedFor('k', 3, W, t0), 0); assert.ok(l.begin('k', 3, W, t0)); }
    assert.equal(l.blockedFor('k', 3, W, t0), FIRST_DELAY_MS / 1000, 'three begun, none finished: already counted');
    assert.equal(l.blockedFor('k', 3, W, t0 + FIRST_DELAY_MS), 0);
    l.begin('k', 3, W, t0 + FIRST_DELAY_MS);
    assert.equal(l.blockedFor('k', 3, W, t0 + FIRST_DELAY_MS), 2 * FIRST_DELAY_MS / 1000);
    for (let i = 0; i < 20; i++) l.begin('k', 3, W, t0 + FIRST_DELAY_MS);
    assert.equal(l.blockedFor('k', 3, W, t0 + FIRST_DELAY_MS), W / 1000, 'never longer than the window');
    assert.equal(l.blockedFor('k', 3, W, t0 + FIRST_DELAY_MS + W + 1), 0, 'forgotten after the window');
    l.begin('a', 3, W, t0); l.begin('a', 3, W, t0);
    l.succeeded('a', false);
    assert.equal(l.failures('a'), 1);
    l.succeeded('a', true);
    assert.equal(l.failures('a'), 0);
  });

  it('a flood of new keys never drops one that still waits; when only waiting keys are left, new ones are refused', () => {
    const l = new LoginLimiter(10);
    const t0 = 5_000_000;
    for (let i = 0; i < 3; i++) l.begin('victim', 3, W, t0);
    for (let i = 0; i < 10_000; i++) assert.ok(l.begin(`flood${i}`, 3, W, t0), `flood${i}`);
    assert.ok(l.blockedFor('victim', 3, W, t0) > 0, 'the waiting key is still counted');
    const full = new LoginLimiter(2);
    for (const k of ['a', 'b']) for (let i = 0; i < 3; i++) full.begin(k, 3, W, t0);
    assert.equal(full.begin('c', 3, W, t0), false);
  });

  it('believes X-Forwarded-For only from a configured proxy, and takes its last address that is not a proxy', () => {
    assert.equal(clientAddress('::ffff:127.0.0.1', '203.0.113.7', []), '127.0.0.1');
    assert.equal(clientAddress('127.0.0.1', '203.0.113.7', ['10.0.0.0/8']), '127.0.0.1');
    assert.equal(clientAddress('10.1.2.3', '6.6.6.6, 203.0.113.7, 10.9.9.9', ['10.0.0.0/8']), '203.0.113.7');
    assert.equal(clientAddress('::1', ['198.51.100.1', '2001:db8::5'], ['::1']), '2001:db8::5');
    assert.equal(clientAddress('10.1.2.3', undefined, ['10.0.0.0/8']), '10.1.2.3');
  });
});
