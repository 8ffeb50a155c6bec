import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { sql } from '@databases/pg';
import { connect } from '../src/db/connect.ts';
import { migrate } from '../src/migrate/migrate.ts';
import { ADMIN, consoleHttp, enableConsole, startConsoleServer } from './support/console.ts';
import { testServer, withDatabase } from './support/cluster.ts';
import { databaseAtPreviousRelease } from './support/upgrade.ts';

/**
 * migrations/0021_console_role.sql: the console changes configuration as
 * espf_console (SET LOCAL ROLE in its audited transaction); the login role of
 * espf run, granted espf_console as the release before it documented
 * (an inherited membership), holds its rights no more after the upgrade.
 */
describe('console role: upgrade from the release before migrations/0021_console_role.sql', function () {
  it('the sender role alone is refused a configuration write (42501); the console still saves a handler', async function () {
    this.timeout(90_000);
    const prev = await databaseAtPreviousRelease('0021_console_role.sql');
    if (!prev) this.skip(); // not a git checkout
    const { db } = prev!;
    const role = `espf_run_t_${randomBytes(4).toString('hex')}`;
    let rdb: ReturnType<typeof connect> | undefined;
    let server: Awaited<ReturnType<typeof startConsoleServer>> | undefined;
    try {
      const [{ name }] = await db.query(sql`SELECT current_database() AS name`);
      await db.query(sql`CREATE ROLE ${sql.ident(role)} LOGIN IN ROLE espf_sender`);
      await db.query(sql`GRANT espf_console TO ${sql.ident(role)}`); // as docs/security.md said before 0021
      await db.query(sql`INSERT INTO espf.events (i_event, event_type, variables)
                         SELECT g, 'Account/Blocked', jsonb_build_object('i_event', g, 'i_account', g) FROM generate_series(1, 20) g`);
      await db.query(sql`INSERT INTO espf.event_deliveries (i_event, handler, state, event_type, order_key, i_account, instance, attempts, finished_at)
                         SELECT g, 'EventSender', CASE WHEN g <= 15 THEN 'DELIVERED' ELSE 'PENDING' END, 'Account/Blocked', 'a:' || g, g, 'main',
                                1, CASE WHEN g <= 15 THEN now() END
                           FROM generate_series(1, 20) g`);
      const roleUrl = new URL(withDatabase(testServer().adminUrl, name));
      roleUrl.username = role;
      roleUrl.password = '';
      rdb = connect({ connectionString: roleUrl.toString(), poolSize: 2 });
      const write = () => rdb!.query(sql`UPDATE espf.http_handlers SET request_timeout = 77 WHERE handler = 'EventSender'`);
      await write(); // the test can fail: before the upgrade the sender role writes configuration

      const r = await migrate(db);
      assert.ok(r.applied.includes('0021_console_role.sql'), `applied ${r.applied.join(', ')}`);
      assert.equal((await db.query(sql`SELECT count(*)::int AS n FROM espf.event_deliveries`))[0].n, 20);
      await assert.rejects(write(), (err: { code?: string }) => err.code === '42501');
      await assert.rejects(rdb.query(sql`INSERT INTO espf.subscriptions (handler, event_type) VALUES ('EventSender', 'Account/New')`),
        (err: { code?: string }) => err.code === '42501');

      await enableConsole(db);
      server = await startConsoleServer(rdb, roleUrl.toString());
      const c = consoleHttp(() => server!.base);
      const { cookie, csrf } = await c.login(ADMIN);
      const saved = await c.form('/console/handlers/EventSender', { _csrf: csrf, request_timeout: '42' }, { cookie, origin: server.base });
      assert.equal(saved.status, 303, await saved.text());
      const [h] = await db.query(sql`SELECT request_timeout FROM espf.http_handlers WHERE handler = 'EventSender'`);
      assert.equal(Number(h.request_timeout), 42);
      const [a] = await db.query(sql`SELECT user_name, action, target FROM espf.console_audit ORDER BY i_audit DESC LIMIT 1`);
      assert.deepEqual(a, { user_name: ADMIN.user, action: 'http handler update', target: 'EventSender' });
    } finally {
      await server?.server.close();
      await rdb?.dispose();
      await db.query(sql`DROP OWNED BY ${sql.ident(role)}`).catch(() => undefined);
      await db.query(sql`DROP ROLE IF EXISTS ${sql.ident(role)}`);
      await prev!.dispose();
    }
  });
});

