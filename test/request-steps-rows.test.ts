// The rows of request steps (espf.http_steps, sql/035_request_steps.sql): what
// the database refuses, one line naming the handler, type and step, nothing
// changed; and the upgrade from the release before migrations/0015_request_steps.sql.
import assert from 'node:assert/strict';
import { sql, type SQLQuery } from '@databases/pg';
import { connect } from '../src/db/connect.ts';
import { migrate } from '../src/migrate/migrate.ts';
import { waitingPage } from '../src/db/deliveries.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';
import { previousRelease } from './support/upgrade.ts';

describe('request steps: the database checks the rows of espf.http_steps', function () {
  let t: TestDatabase;
  before(async () => {
    t = await createTestDatabase();
    await t.db.query(sql`INSERT INTO espf.handlers (name, kind) VALUES ('HSS', 'http')`);
    await t.db.query(sql`INSERT INTO espf.http_handlers (handler, url) VALUES ('HSS', '{https://hss.example.com/api}')`);
    await t.db.query(sql`INSERT INTO espf.http_steps (handler, event_type, step, name, method, path, body)
                         VALUES ('HSS', 'Account/New', 1, 'auc', 'PUT', '/auc/', '{"imsi": variables.id}')`);
  });
  after(async () => { await t?.drop(); });

  const snapshot = async () => JSON.stringify(await t.db.query(sql`SELECT * FROM espf.http_steps ORDER BY 1, 2, 3`))
    + JSON.stringify(await t.db.query(sql`SELECT url FROM espf.http_handlers ORDER BY handler`));

  async function refused(statement: SQLQuery, column: string, ...mentions: string[]): Promise<void> {
    const before = await snapshot();
    let err: (Error & { code?: string }) | undefined;
    try {
      await t.db.query(statement);
    } catch (e) {
      err = e as Error & { code?: string };
    }
    assert.ok(err, `refused (${column})`);
    assert.equal(err.code, '23514', err.message);
    assert.ok(!err.message.includes('\n'), `one line: ${err.message}`);
    assert.ok(err.message.startsWith(`espf.${column}: `), err.message);
    for (const m of mentions) assert.ok(err.message.includes(m), `"${m}" in: ${err.message}`);
    assert.equal(await snapshot(), before, 'nothing changed');
  }
  /** An INSERT of a step of HSS, Account/Blocked, 1 with these fields changed. */
  const step = (fields: SQLQuery) => sql`INSERT INTO espf.http_steps SELECT * FROM jsonb_populate_record(NULL::espf.http_steps,
    '{"handler": "HSS", "event_type": "Account/Blocked", "step": 1, "method": "POST", "path": "/x", "headers": {},
      "content_type": "application/json", "updated_at": "2026-01-01T00:00:00Z"}'::jsonb || ${fields})`;

  it('accepts a well-formed step, and the default row "*"', async () => {
    await t.db.query(step(sql`'{"event_type": "*", "method": "PATCH", "path": "/subscriber/{variables.i_account}", "body": "{\\"enabled\\": false}", "headers": {"X-Api-Key": "env:ESPF_SECRET_HSS"}}'::jsonb`));
    await t.db.query(sql`DELETE FROM espf.http_steps WHERE event_type = '*'`);
  });

  it('refuses an unknown method, naming handler, type and step', () =>
    refused(step(sql`'{"method": "TRACE"}'::jsonb`), 'http_steps.method', 'handler HSS, type Account/Blocked, step 1', "'TRACE'"));
  it('refuses a body on a GET', () => refused(step(sql`'{"method": "GET", "body": "{}"}'::jsonb`), 'http_steps.body', 'GET'));
  it('refuses an unknown event type', () => refused(step(sql`'{"event_type": "Account/Nope"}'::jsonb`), 'http_steps.event_type', 'Account/Nope'));
  it('refuses a step number out of range', () => refused(step(sql`'{"step": 0}'::jsonb`), 'http_steps.step', '1 … 20'));
  it('refuses a path that leaves the base URL or is not a path', async () => {
    for (const p of ['http://evil.example.com/', '//evil.example.com/', '/a/../b', 'x', `/a${'b'.repeat(2048)}`, '/a\tb']) {
      await refused(step(sql`jsonb_build_object('path', ${p}::text)`), 'http_steps.path');
    }
  });
  it('refuses a name taken by another step of the type, and a name that is not an identifier', async () => {
    await refused(step(sql`'{"event_type": "Account/New", "step": 2, "name": "auc"}'::jsonb`), 'http_steps.name', 'auc');
    await refused(step(sql`'{"name": "1x"}'::jsonb`), 'http_steps.name', '1x');
  });
  it('refuses headers espf sets, bad header names, non-string values and env: names without the prefix', async () => {
    await refused(step(sql`'{"headers": {"Content-Type": "\\"text/plain\\""}}'::jsonb`), 'http_steps.headers', 'Content-Type');
    await refused(step(sql`'{"headers": {"Bad Name": "\\"x\\""}}'::jsonb`), 'http_steps.headers', 'Bad Name');
    await refused(step(sql`'{"headers": {"X-N": 5}}'::jsonb`), 'http_steps.headers', 'X-N');
    await refused(step(sql`'{"headers": ["x"]}'::jsonb`), 'http_steps.headers', 'JSON object');
    await refused(step(sql`'{"headers": {"X-Key": "env:DATABASE_URL"}}'::jsonb`), 'http_steps.headers', 'ESPF_SECRET_');
  });
  it('refuses another content type, an empty expression', async () => {
    await refused(step(sql`'{"content_type": "text/xml"}'::jsonb`), 'http_steps.content_type', 'text/xml');
    await refused(step(sql`'{"body": "  "}'::jsonb`), 'http_steps.body', 'empty');
  });
  it('steps go to one base URL: refuses steps on a handler with two URLs, and a second URL on a handler with steps', async () => {
    await refused(sql`UPDATE espf.http_handlers SET url = '{https://a.example.com/,https://b.example.com/}' WHERE handler = 'HSS'`,
      'http_handlers.url', 'handler HSS has request steps');
    await t.db.query(sql`UPDATE espf.http_handlers SET url = '{https://a.example.com/,https://b.example.com/}' WHERE handler = 'EventSender'`);
    await refused(sql`INSERT INTO espf.http_steps (handler, event_type, step) VALUES ('EventSender', '*', 1)`, 'http_steps.handler', 'has 2 URLs');
  });
  it('a deleted handler takes its steps with it', async () => {
    await t.db.query(sql`INSERT INTO espf.handlers (name, kind) VALUES ('Gone', 'http')`);
    await t.db.query(sql`INSERT INTO espf.http_handlers (handler, url) VALUES ('Gone', '{https://gone.example.com/}')`);
    await t.db.query(sql`INSERT INTO espf.http_steps (handler, event_type, step) VALUES ('Gone', '*', 1)`);
    await t.db.query(sql`DELETE FROM espf.handlers WHERE name = 'Gone'`);
    const [r] = await t.db.query(sql`SELECT count(*)::int AS n FROM espf.http_steps WHERE handler = 'Gone'`);
    assert.equal(r.n, 0);
  });
});

describe('request steps: upgrade from the previous release (migrations/0015_request_steps.sql)', function () {
  it('keeps events and deliveries; the new columns read 0 and null; waiting pages and results carry them', async function () {
    this.timeout(60_000);
    const prev = await previousRelease('0015_request_steps.sql', ['035_request_steps.sql']);
    if (!prev) this.skip(); // not a git checkout
    const e = await createTestDatabase({ empty: true });
    const db = connect({ connectionString: e.url, poolSize: 2 });
    try {
      await migrate(db, prev!);
      await db.query(sql`INSERT INTO espf.events (i_event, event_type, variables)
                         SELECT g, 'Account/Blocked', jsonb_build_object('i_event', g, 'i_account', g % 10) FROM generate_series(1, 40) g`);
      await db.query(sql`INSERT INTO espf.event_deliveries (i_event, handler, state, event_type, order_key, i_account, instance, commit_lsn, attempts, urls_done)
                         SELECT g, 'EventSender', CASE WHEN g <= 10 THEN 'DELIVERED' WHEN g <= 15 THEN 'SUPERSEDED' WHEN g <= 25 THEN 'RETRY' ELSE 'PENDING' END,
                                'Account/Blocked', 'a:' || (g % 10), g % 10, 'main', ('0/' || to_hex(1000 + g))::pg_lsn, CASE WHEN g <= 25 THEN 1 ELSE 0 END,
                                CASE WHEN g BETWEEN 16 AND 25 THEN 1 ELSE 0 END
                           FROM generate_series(1, 40) g`);
      const events = await db.query(sql`SELECT to_jsonb(e) AS e FROM espf.events e ORDER BY i_event`);
      const deliveries = await db.query(sql`SELECT to_jsonb(d) AS d FROM espf.event_deliveries d ORDER BY i_event`);
      const r = await migrate(db);
      assert.ok(r.applied.includes('0015_request_steps.sql'), `applied ${r.applied.join(', ')}`);
      assert.deepEqual(await db.query(sql`SELECT to_jsonb(e) - 'target_handler' AS e FROM espf.events e ORDER BY i_event`), events);
      assert.deepEqual(await db.query(sql`SELECT to_jsonb(d) - 'steps_done' - 'step_answers' AS d FROM espf.event_deliveries d ORDER BY i_event`), deliveries);
      const [c] = await db.query(sql`SELECT count(*) FILTER (WHERE steps_done = 0 AND step_answers IS NULL)::int AS fresh, count(*)::int AS n FROM espf.event_deliveries`);
      assert.deepEqual(c, { fresh: 40, n: 40 });
      const page = await waitingPage(db, 'EventSender', { k: 0, n: 1 }, { lsn: null, iEvent: 0 }, 100);
      assert.equal(page.length, 25);
      assert.ok(page.every((p) => p.steps_done === 0 && p.step_answers === null));
      assert.equal(page.find((p) => Number(p.i_event) === 20)?.urls_done, 1);
      // The results writer's function takes the new fields, and an older sender's records without them.
      await db.query(sql`SELECT espf.record_deliveries('main', ${JSON.stringify([
        { i_event: 30, handler: 'EventSender', state: 'PENDING', event_type: 'Account/Blocked', order_key: 'a:0', i_account: 0, commit_lsn: '0/40E',
          attempts: 1, urls_done: 0, steps_done: 1, step_answers: [{ status: 200, headers: {}, body: { auc_id: 7 } }], n: 0 },
        { i_event: 31, handler: 'EventSender', state: 'RETRY', event_type: 'Account/Blocked', order_key: 'a:1', i_account: 1, commit_lsn: '0/40F',
          attempts: 1, urls_done: 0, n: 1 },
      ])}::json)`);
      const rows = await db.query(sql`SELECT i_event, steps_done, step_answers FROM espf.event_deliveries WHERE i_event IN (30, 31) ORDER BY i_event`);
      assert.deepEqual(rows.map((x) => [Number(x.i_event), x.steps_done, x.step_answers]), [[30, 1, [{ status: 200, headers: {}, body: { auc_id: 7 } }]], [31, 0, null]]);
      // SKIPPED is a state now; the old rows were valid under the narrower CHECK.
      await db.query(sql`UPDATE espf.event_deliveries SET state = 'SKIPPED' WHERE i_event = 40`);
      await db.query(sql`ALTER TABLE espf.event_deliveries VALIDATE CONSTRAINT event_deliveries_state_check`);
      assert.deepEqual((await migrate(db)).applied, [], 'a second migrate applies nothing');
    } finally {
      await db.dispose();
      await e.drop();
    }
  });
});
