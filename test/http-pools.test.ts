import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from '@databases/pg';
import pino from 'pino';
import { provisioningLog } from '../src/log/logger.ts';
import { startHttpServer } from '../src/run/http-server.ts';
import { HTTP_POOL_SIZE, openPools, type Pools } from '../src/run/pools.ts';
import { Sender } from '../src/run/sender.ts';
import { holdLock, lockWaiters } from './support/console.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';

/**
 * The status API runs on a pool of its own (src/run/pools.ts, wired as espf run
 * wires it): reports held up by a lock wait there, and the sender's pool stays free.
 */
describe('http pools: the status API waits on its own pool, never on the sender\'s', function () {
  this.timeout(60_000);
  let t: TestDatabase;
  let pools: Pools;
  let server: Awaited<ReturnType<typeof startHttpServer>>;
  const TOKEN = 'pool-token-0123456789abcdef';

  before(async () => {
    t = await createTestDatabase();
    await t.db.query(sql`UPDATE espf.status_api SET token = ${TOKEN}, enabled = true`);
    pools = openPools(t.url, 'main');
    const log = pino({ level: 'silent' });
    const sender = new Sender({ db: pools.db, url: t.url, instance: 'main', log, plog: provisioningLog(mkdtempSync(path.join(os.tmpdir(), 'espf-log-'))) });
    server = await startHttpServer({ sender, db: pools.db, consoleDb: pools.consoleDb, httpDb: pools.httpDb, log, port: 0, host: '127.0.0.1' });
  });
  after(async () => {
    await server?.close();
    await pools?.dispose();
    await t?.drop();
  });

  it('20 reports waiting on a lock take at most its 2 connections; the sender\'s pool answers meanwhile', async () => {
    const lock = await holdLock(t.db, 'espf.status_api');
    const reports = Promise.all(Array.from({ length: 20 }, () => fetch(`http://127.0.0.1:${server.port}/espf/v1/account/i/1/status`, {
      method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify({ status: 'OK', group: 'HSS' }),
    }).then((r) => r.status)));
    try {
      assert.deepEqual(await lockWaiters(t.db, 'espf.status_api', 'the status API read to wait on the lock'), ['espf run main http']);
      const [c] = await t.db.query(sql`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'espf run main http'`);
      assert.ok(c.n <= HTTP_POOL_SIZE, `${c.n} connections of the http pool`);
      const [one] = await pools.db.query(sql`SELECT 1 AS one`);
      assert.equal(one.one, 1, 'the sender\'s pool is free');
    } finally {
      await lock.release();
    }
    // The account does not exist: every report gets its answer once the lock is gone (404).
    assert.deepEqual([...new Set(await reports)], [404]);
  });
});
