// DATABASE_URL with several hosts (libpq's form): parsed by espf, the primary
// found by asking real servers. The switch to a promoted standby is in
// test/failover.test.ts.
import assert from 'node:assert/strict';
import { sql } from '@databases/pg';
import { freePort } from '../src/db/cluster.ts';
import { connect, locatePrimary } from '../src/db/connect.ts';
import { parseHosts } from '../src/db/hosts.ts';
import { redactUrl } from '../src/security/redact.ts';
import { espf } from './support/cli.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';

describe('DATABASE_URL with several hosts', function () {
  let t: TestDatabase;
  before(async () => { t = await createTestDatabase(); });
  after(async () => { await t?.drop(); });

  it('parses the host list, keeps user, database and other parameters, drops target_session_attrs', () => {
    const p = parseHosts('postgres://espf:s3cret@db1:5432,db2,[::1]:5433/billing?target_session_attrs=read-write&sslmode=disable');
    assert.deepEqual(p.hosts, [{ host: 'db1', port: 5432 }, { host: 'db2' }, { host: '[::1]', port: 5433 }]);
    assert.equal(p.urlFor(p.hosts[1]!), 'postgres://espf:s3cret@db2/billing?sslmode=disable');
    assert.equal(p.urlFor(p.hosts[2]!), 'postgres://espf:s3cret@[::1]:5433/billing?sslmode=disable');
    assert.equal(redactUrl('postgres://espf:s3cret@db1,db2/billing'), 'postgres://espf:***@db1,db2/billing');
    assert.deepEqual(parseHosts('postgresql://db/x').hosts, [{ host: 'db' }]);
  });

  it('refuses what espf cannot honour, in one line', () => {
    assert.throws(() => parseHosts('postgres://u@a,b/x?target_session_attrs=standby'), (e: Error & { code?: string }) =>
      e.code === 'ESPF_USAGE' && /target_session_attrs=standby is not supported/.test(e.message));
    assert.throws(() => connect({ connectionString: 'postgres://u@a:5432,,b/x' }), { code: 'ESPF_USAGE' });
    assert.throws(() => parseHosts('postgres://u@a:99999,b/x'), { code: 'ESPF_USAGE' });
  });

  it('finds the primary behind a host that does not answer, and the pool uses it', async () => {
    const dead = await freePort();
    const live = new URL(t.url);
    const url = `postgres://postgres@127.0.0.1:${dead},127.0.0.1:${live.port}/${t.name}?target_session_attrs=read-write`;
    assert.equal(await locatePrimary(url), `postgres://postgres@127.0.0.1:${live.port}/${t.name}`);
    const db = connect({ connectionString: url, poolSize: 1 });
    try {
      const [r] = await db.query(sql`SELECT pg_is_in_recovery() AS standby, current_database() AS d`);
      assert.deepEqual(r, { standby: false, d: t.name });
      await db.tx(async (tx) => tx.query(sql`SELECT 1`));
    } finally {
      await db.dispose();
    }
  });

  it('espf says in one line that no host is a primary', async () => {
    const [a, b] = [await freePort(), await freePort()];
    const r = await espf(['status'], { DATABASE_URL: `postgres://postgres:pw@127.0.0.1:${a},127.0.0.1:${b}/x?target_session_attrs=read-write` });
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /no primary among the hosts of DATABASE_URL \(127\.0\.0\.1:\d+: connect ECONNREFUSED/);
    assert.doesNotMatch(r.stderr, /pw/);
  });
});
