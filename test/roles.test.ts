import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { sql } from '@databases/pg';
import { connect, type Db } from '../src/db/connect.ts';
import { readStatus } from '../src/cli/status-command.ts';
import { testServer } from './support/cluster.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { EspfProcess } from './support/child.ts';
import { eventually, TestReceiver } from './support/receiver.ts';
import { configureEventSender, seedCustomer } from './support/sender.ts';

/**
 * migrations/0006_roles.sql: `espf run` as a fresh LOGIN REPLICATION role that
 * is only a member of espf_sender delivers end to end (dispatchers and
 * maintenance included); espf_reporting reads the reports but writes nothing
 * and sees no secret.
 */

function urlAs(url: string, role: string, password: string): string {
  const u = new URL(url);
  u.username = role;
  u.password = password;
  return u.toString();
}

/** A login role of the cluster (dropped after the test file). */
async function createLogin(group: string, replication: boolean): Promise<{ role: string; password: string }> {
  const role = `espf_t_${group.replace('espf_', '')}_${randomBytes(4).toString('hex')}`;
  const password = randomBytes(12).toString('hex');
  const admin = connect({ connectionString: testServer().adminUrl, poolSize: 1 });
  try {
    await admin.query(sql`CREATE ROLE ${sql.ident(role)} LOGIN ${replication ? sql`REPLICATION` : sql``} PASSWORD ${sql.__dangerous__rawValue(`'${password}'`)} IN ROLE ${sql.ident(group)}`);
  } finally {
    await admin.dispose();
  }
  return { role, password };
}

async function dropLogins(roles: string[]): Promise<void> {
  const admin = connect({ connectionString: testServer().adminUrl, poolSize: 1 });
  try {
    for (const r of roles) await admin.query(sql`DROP ROLE IF EXISTS ${sql.ident(r)}`);
  } finally {
    await admin.dispose();
  }
}

async function refusedPermission(db: Db, q: ReturnType<typeof sql>, what: string): Promise<void> {
  await assert.rejects(db.query(q), (err: { code?: string; message?: string }) => {
    assert.equal(err.code, '42501', `${what}: ${err.message}`);
    assert.match(String(err.message), /permission denied/);
    return true;
  }, what);
}

describe('roles: least privilege (migrations/0006_roles.sql)', function () {
  // Not test/support/fixture.ts: espf run connects as a login role the test makes (a URL of its
  // own), and the login roles, which belong to the cluster, are dropped after the database.
  let t: TestDatabase;
  let rx: TestReceiver;
  const logins: string[] = [];
  const dbs: Db[] = [];
  let child: EspfProcess | undefined;

  before(async () => {
    t = await createTestDatabase();
    rx = await new TestReceiver().listen();
  });
  after(async () => {
    await child?.stop();
    for (const d of dbs) await d.dispose();
    await rx?.close();
    await t?.drop();
    await dropLogins(logins);
  });

  it('the group roles exist, cannot log in, and are created only once per cluster', async () => {
    const rows = await t.db.query(sql`SELECT rolname, rolcanlogin, rolreplication, rolsuper FROM pg_roles
                                        WHERE rolname IN ('espf_sender', 'espf_reporting') ORDER BY rolname`);
    assert.deepEqual(rows, [
      { rolname: 'espf_reporting', rolcanlogin: false, rolreplication: false, rolsuper: false },
      { rolname: 'espf_sender', rolcanlogin: false, rolreplication: false, rolsuper: false },
    ]);
    // The test template was migrated in this cluster already: the migration's guard let it run again.
    const [m] = await t.db.query(sql`SELECT count(*)::int AS n FROM espf.migrations WHERE name = '0006_roles.sql'`);
    assert.equal(m.n, 1);
  });

  it('espf run as a LOGIN REPLICATION role in espf_sender delivers end to end, dispatchers and maintenance included', async function () {
    this.timeout(60_000);
    const { role, password } = await createLogin('espf_sender', true);
    logins.push(role);
    await configureEventSender(t.db, rx.url, ['Account/New', 'Account/Blocked'], {
      basic_auth_user: 'hss', basic_auth_key: 'k3y', auth_method: 'Basic',
    });
    await t.db.query(sql`UPDATE espf.handlers SET enabled = true WHERE name = 'CustomerToAccountsDispatcher'`);
    await t.db.query(sql`INSERT INTO espf.subscriptions VALUES ('CustomerToAccountsDispatcher', 'Customer/Blocked')`);
    await t.db.query(sql`UPDATE espf.event_types SET enabled = true WHERE name = 'Customer/Blocked'`);
    await t.db.query(sql`UPDATE espf.maintenance SET pass_interval = '1 second'`);
    const ids = await seedCustomer(t.db);

    child = new EspfProcess(urlAs(t.url, role, password), 'main');
    await child.streaming();
    const [slot] = await t.db.query(sql`SELECT slot_name FROM pg_replication_slots WHERE database = ${t.name}`);
    assert.equal(slot?.slot_name, 'espf_main', 'the role created its slot');

    const [a] = await t.db.query(sql`INSERT INTO billing.account (id, i_customer, i_product) VALUES ('role-1', ${ids.i_customer}, ${ids.i_product}) RETURNING i_account`);
    await t.db.query(sql`UPDATE billing.customer SET blocked = true WHERE i_customer = ${ids.i_customer}`);
    await rx.waitFor(() => rx.received.some((r) => r.json.event_type === 'Account/Blocked'), 20_000, 'the dispatched Account/Blocked');
    assert.deepEqual(rx.received.map((r) => [r.json.event_type, r.json.variables.i_account]), [
      ['Account/New', a.i_account], ['Account/Blocked', a.i_account],
    ]);
    assert.equal(rx.received[0]!.headers.authorization, `Basic ${Buffer.from('hss:k3y').toString('base64')}`);
    const rows = await eventually(async () => {
      const r = await t.db.query(sql`SELECT e.event_type, d.state, d.instance FROM espf.event_deliveries d JOIN espf.events e USING (i_event)
                                      WHERE d.handler = 'EventSender' ORDER BY i_event`);
      return r.length === 2 && r.every((x) => x.state === 'DELIVERED') && r;
    }, 10_000, 'two DELIVERED rows');
    assert.deepEqual(rows.map((r) => r.event_type), ['Account/New', 'Account/Blocked']);
    const [st] = await t.db.query(sql`SELECT status FROM espf.account_provisioning_statuses WHERE i_account = ${a.i_account}`);
    assert.equal(st.status, 'OK');

    // Maintenance passes (reclaim, purge, slot lag) ran under the role and recorded their results.
    await eventually(async () => {
      const r = await t.db.query(sql`SELECT task FROM espf.maintenance_runs
                                      WHERE task IN ('reclaim', 'purge', 'slot_lag') AND last_instance = 'main' AND last_result IS NOT NULL`);
      return r.length === 3;
    }, 40_000, 'a maintenance pass of every task').catch(async (err) => {
      const runs = await t.db.query(sql`SELECT * FROM espf.maintenance_runs`);
      const act = await t.db.query(sql`SELECT usename, state, wait_event, left(query, 120) AS q FROM pg_stat_activity WHERE datname = ${t.name}`);
      throw new Error(`${err.message}\n${JSON.stringify(runs)}\n${JSON.stringify(act)}\n${child!.output.slice(-4000)}`);
    });
    assert.doesNotMatch(child.output, /permission denied/i, child.output);

    // It cannot change configuration.
    const asSender = connect({ connectionString: urlAs(t.url, role, password), poolSize: 1 });
    dbs.push(asSender);
    await refusedPermission(asSender, sql`UPDATE espf.handlers SET enabled = false`, 'sender: UPDATE espf.handlers');
    await refusedPermission(asSender, sql`UPDATE espf.http_handlers SET url = '{http://evil.example/}'`, 'sender: UPDATE espf.http_handlers');
    await refusedPermission(asSender, sql`INSERT INTO espf.subscriptions VALUES ('EventSender', 'Account/Unblocked')`, 'sender: INSERT espf.subscriptions');
    await refusedPermission(asSender, sql`UPDATE billing.account SET blocked = false`, 'sender: UPDATE billing.account');
    await refusedPermission(asSender, sql`UPDATE espf.events SET variables = '{}'`, 'sender: rewrite an event');
    await refusedPermission(asSender, sql`UPDATE espf.event_types SET enabled = true`, 'sender: UPDATE espf.event_types');
    await child.stop();
    assert.equal(child.exitCode, 0, child.output);
  });

  it('espf_reporting reads the reports and the results, but writes nothing and sees no secret', async () => {
    const { role, password } = await createLogin('espf_reporting', false);
    logins.push(role);
    const asReporting = connect({ connectionString: urlAs(t.url, role, password), poolSize: 1 });
    dbs.push(asReporting);
    const report = await readStatus(asReporting, { hours: 24, limit: 20 });
    assert.ok(report.account_status.by_handler.some((r) => r.handler === 'EventSender' && Number(r.ok) === 1), JSON.stringify(report));
    assert.ok(report.backlog.some((r) => r.handler === 'EventSender'));
    const [n] = await asReporting.query(sql`SELECT (SELECT count(*) FROM espf.events)::int AS events,
                                                   (SELECT count(*) FROM espf.event_deliveries)::int AS deliveries,
                                                   (SELECT count(*) FROM billing.account)::int AS accounts,
                                                   (SELECT count(*) FROM espf.matrix)::int AS matrix`);
    assert.ok(n.events >= 3 && n.deliveries >= 2 && n.accounts === 1 && n.matrix > 0, JSON.stringify(n));
    const [h] = await asReporting.query(sql`SELECT handler, url, auth_method, basic_auth_user FROM espf.http_handlers WHERE handler = 'EventSender'`);
    assert.deepEqual(h, { handler: 'EventSender', url: [rx.url], auth_method: 'Basic', basic_auth_user: 'hss' });

    await refusedPermission(asReporting, sql`SELECT basic_auth_key FROM espf.http_handlers`, 'reporting: the Basic key');
    await refusedPermission(asReporting, sql`SELECT * FROM espf.http_handlers`, 'reporting: SELECT * of http_handlers');
    await refusedPermission(asReporting, sql`SELECT token FROM espf.status_api`, 'reporting: the status API token');
    await refusedPermission(asReporting, sql`SELECT smtp_url FROM espf.notifications`, 'reporting: the SMTP URL');
    await refusedPermission(asReporting, sql`UPDATE espf.handlers SET enabled = false WHERE name = 'EventSender'`, 'reporting: UPDATE espf.handlers');
    await refusedPermission(asReporting, sql`UPDATE espf.http_handlers SET request_timeout = 1`, 'reporting: UPDATE espf.http_handlers');
    await refusedPermission(asReporting, sql`INSERT INTO espf.subscriptions VALUES ('EventSender', 'Account/Unblocked')`, 'reporting: INSERT espf.subscriptions');
    await refusedPermission(asReporting, sql`UPDATE espf.event_types SET enabled = true`, 'reporting: UPDATE espf.event_types');
    await refusedPermission(asReporting, sql`DELETE FROM espf.events`, 'reporting: DELETE espf.events');
    await refusedPermission(asReporting, sql`UPDATE espf.event_deliveries SET state = 'PENDING'`, 'reporting: UPDATE espf.event_deliveries');
    await refusedPermission(asReporting, sql`SELECT espf.resend(status => 'FAILED')`, 'reporting: espf.resend');
    await refusedPermission(asReporting, sql`UPDATE billing.account SET blocked = true`, 'reporting: UPDATE billing.account');
    const [still] = await t.db.query(sql`SELECT enabled FROM espf.handlers WHERE name = 'EventSender'`);
    assert.equal(still.enabled, true);
  });
  it('a billing application role in espf_capture writes billing with every type captured, and cannot touch espf otherwise', async () => {
    const { role, password } = await createLogin('espf_capture', false);
    logins.push(role);
    await t.db.query(sql`GRANT USAGE ON SCHEMA billing TO ${sql.ident(role)}`);
    await t.db.query(sql`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA billing TO ${sql.ident(role)}`);
    await t.db.query(sql`UPDATE espf.event_types SET enabled = true`);
    const asApp = connect({ connectionString: urlAs(t.url, role, password), poolSize: 1 });
    dbs.push(asApp);
    const ids = await seedCustomer(asApp, { name: 'app' });
    const [a] = await asApp.query(sql`INSERT INTO billing.account (id, i_customer, i_product) VALUES ('app-1', ${ids.i_customer}, ${ids.i_product}) RETURNING i_account`);
    await asApp.query(sql`INSERT INTO billing.sim_card (imsi, i_account) VALUES ('001010000000001', ${a.i_account})`);
    await asApp.query(sql`INSERT INTO billing.service_attribute_value (owner_type, owner_id, service, name, value) VALUES ('account', ${a.i_account}, 'voice', 'cfu', 'on')`);
    await asApp.query(sql`UPDATE billing.account SET blocked = true WHERE i_account = ${a.i_account}`);
    await asApp.query(sql`UPDATE billing.account SET balance = 5 WHERE i_account = ${a.i_account}`);
    await asApp.query(sql`UPDATE billing.account SET balance = -1 WHERE i_account = ${a.i_account}`);
    const rows = await t.db.query(sql`SELECT event_type FROM espf.events WHERE variables->>'i_account' = ${String(a.i_account)} OR variables->>'owner_id' = ${String(a.i_account)} ORDER BY i_event`);
    assert.deepEqual(rows.map((r) => r.event_type), ['Account/New', 'Subscriber/Created', 'Account/SIMCardAssignment', 'ServiceAttribute/Changed',
      'Account/Blocked', 'Subscriber/Updated', 'Account/AvailableFundsAppear', 'Account/ZeroAvailableFunds']);
    await refusedPermission(asApp, sql`SELECT * FROM espf.events`, 'capture: read the outbox');
    await refusedPermission(asApp, sql`UPDATE espf.event_types SET enabled = false`, 'capture: switch capture');
    await t.db.query(sql`UPDATE espf.event_types SET enabled = false`);
  });
});
