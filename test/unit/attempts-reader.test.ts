// Pure unit tests (no database): reading attempts back from provisioning.log (src/log/logger.ts readAttempts),
// and the console's route table (src/console/routes.ts).
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { provisioningLog, readAttempts, type AttemptLine } from '../../src/log/logger.ts';
import { findRoute, ROUTES } from '../../src/console/routes.ts';

describe('unit: provisioning.log read back (readAttempts)', function () {
  const line = (i: number, account: number | null): AttemptLine => ({ instance: 'main', handler: 'EventSender', i_event: i,
    event_type: 'Account/Blocked', i_account: account, url: 'http://127.0.0.1:8080/', attempt: 1, status: i % 2 ? 200 : null,
    error: i % 2 ? null : 'ECONNREFUSED', duration_ms: 1.5 });

  it('gives one account\'s attempts, newest first, as written; not those of an account whose number starts the same', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'espf-plog-'));
    try {
      const log = provisioningLog(dir);
      for (let i = 1; i <= 30; i++) log.attempt(line(i, i % 3 === 0 ? 12 : i % 3 === 1 ? 1 : null));
      await log.flush();
      const got = await readAttempts(dir, 1);
      assert.deepEqual(got.map((a) => a.i_event), [28, 25, 22, 19, 16, 13, 10, 7, 4, 1]);
      const { time, level, ...rest } = got[0] as unknown as Record<string, unknown>;
      assert.match(String(time), /^\d{4}-\d\d-\d\dT/);
      assert.equal(level, 30);
      assert.deepEqual(rest, line(28, 1));
      assert.deepEqual((await readAttempts(dir, 12, { limit: 3 })).map((a) => a.i_event), [30, 27, 24]);
      assert.deepEqual(await readAttempts(dir, 99), []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('reads only the end of the file (a cut first line is skipped) and answers none when there is no file', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'espf-plog-'));
    try {
      assert.deepEqual(await readAttempts(dir, 1), []);
      const log = provisioningLog(dir);
      for (let i = 1; i <= 100; i++) log.attempt(line(i, 7));
      await log.flush();
      const got = await readAttempts(dir, 7, { maxBytes: 1000 });
      assert.ok(got.length > 0 && got.length < 10, `${got.length} attempts in the last 1000 bytes`);
      assert.equal(got[0]!.i_event, 100);
      assert.deepEqual(got.map((a) => a.i_event), got.map((_, k) => 100 - k));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('unit: the console\'s route table', function () {
  const route = (p: string, get: boolean) => findRoute(ROUTES, p, get);

  it('finds each page by path and method, with the groups of its pattern', () => {
    assert.deepEqual(route('/console/handlers/EventSender/test', false)?.params, ['EventSender', '/test']);
    assert.deepEqual(route('/console/handlers/EventSender', true)?.params, ['EventSender', '']);
    assert.deepEqual(route('/console/subscribers/42', true)?.params, ['42']);
    assert.equal(route('/console/matrix', true)?.route, route('/console/matrix', false)?.route);
    assert.equal(route('/console/logout', false)?.route.anyRole, true);
  });

  it('has no page for the wrong method or an unknown path (404)', () => {
    for (const [p, get] of [['/console/resend', true], ['/console/deliveries', false], ['/console/subscribers/42', false],
      ['/console/subscribers/1234567890123456', true], ['/console/nope', true], ['/console/handlers', false], ['/console/logout', true]] as const) {
      assert.equal(route(p, get), null, `${get ? 'GET' : 'POST'} ${p}`);
    }
  });
});
