// Pure unit tests (no database): the lines of provisioning.log, put together by hand on the hot path.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { provisioningLog, type AttemptLine } from '../../src/log/logger.ts';

describe('unit: provisioning.log lines', function () {
  it('are JSON lines with level, time and every field as given, whatever the strings hold', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'espf-plog-'));
    try {
      const log = provisioningLog(dir);
      const lines: AttemptLine[] = [
        { instance: 'main', handler: 'EventSender', i_event: 1, event_type: 'Account/Blocked', i_account: 100001,
          url: 'http://127.0.0.1:8080/x', attempt: 1, status: 200, error: null, duration_ms: 0.7 },
        { instance: 'in"st\\', handler: 'h\u0000\u2028é', i_event: 9_007_199_254_740_991, event_type: 'Customer/Created', i_account: null,
          url: 'https://u:***@h/p?q="1"', attempt: 3, status: null, error: 'ECONNREFUSED: "no"\nsecond line\t\u001b[31m', duration_ms: 12.5 },
      ];
      for (const l of lines) log.attempt(l);
      await log.flush();
      const text = await readFile(path.join(dir, 'provisioning.log'), 'utf8');
      const got = text.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.equal(got.length, 2);
      for (const [i, g] of got.entries()) {
        const { level, time, ...rest } = g;
        assert.equal(level, 30);
        assert.match(String(time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        assert.deepEqual(rest, lines[i]);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('flush() resolves once every line given so far is in the file, in order (batches past 64 KiB included)', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'espf-plog-'));
    try {
      const log = provisioningLog(dir);
      const line = (i: number): AttemptLine => ({ instance: 'main', handler: 'EventSender', i_event: i, event_type: 'Account/Blocked',
        i_account: i, url: 'http://127.0.0.1:8080/', attempt: 1, status: 200, error: null, duration_ms: 1 });
      for (let i = 1; i <= 3000; i++) log.attempt(line(i));
      await log.flush();
      const first = (await readFile(path.join(dir, 'provisioning.log'), 'utf8')).trimEnd().split('\n');
      assert.deepEqual(first.map((l) => (JSON.parse(l) as { i_event: number }).i_event), Array.from({ length: 3000 }, (_, i) => i + 1));
      log.attempt(line(3001));
      await log.flush();
      const all = (await readFile(path.join(dir, 'provisioning.log'), 'utf8')).trimEnd().split('\n');
      assert.equal(all.length, 3001);
      assert.equal((JSON.parse(all[3000]!) as { i_event: number }).i_event, 3001);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
