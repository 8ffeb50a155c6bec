import assert from 'node:assert/strict';
import { readEnv } from '../src/config/env.ts';
import { espf, show } from './support/cli.ts';

/**
 * ESPF_STOP_TIMEOUT (src/config/env.ts, src/run/run-command.ts): the seconds from
 * SIGTERM to the exit of `espf run`. The stop itself, with the database down, is
 * tested in test/outage.test.ts ("ends within ESPF_STOP_TIMEOUT").
 */
describe('ESPF_STOP_TIMEOUT', function () {
  this.timeout(60_000);

  it('defaults to 25 s; takes whole or decimal seconds from 1 to 3600', () => {
    assert.equal(readEnv({}).stopTimeoutMs, 25_000);
    assert.equal(readEnv({ ESPF_STOP_TIMEOUT: '3' }).stopTimeoutMs, 3000);
    assert.equal(readEnv({ ESPF_STOP_TIMEOUT: '2.5' }).stopTimeoutMs, 2500);
    assert.equal(readEnv({ ESPF_STOP_TIMEOUT: '1' }).stopTimeoutMs, 1000);
    assert.equal(readEnv({ ESPF_STOP_TIMEOUT: '3600' }).stopTimeoutMs, 3_600_000);
  });

  it('a bad value: espf run refuses it at start, in one line naming the variable, and starts nothing', async () => {
    for (const value of ['abc', '', '0', '0.5', '-1', '3601', '1e3', '2.5.1', ' 3']) {
      const r = await espf(['run'], { DATABASE_URL: 'postgres://nobody@127.0.0.1:1/none', ESPF_STOP_TIMEOUT: value });
      assert.equal(r.code, 1, show(r));
      const shown = value === '' ? "''" : value;
      assert.equal(r.stderr, `espf: ESPF_STOP_TIMEOUT=${shown} is not a number of seconds from 1 to 3600\n`, show(r));
      assert.equal(r.stdout, '', show(r));
    }
  });
});
