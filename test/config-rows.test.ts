import assert from 'node:assert/strict';
import { sql, type SQLQuery } from '@databases/pg';
import { createTestDatabase, type TestDatabase } from './support/database.ts';

// Configuration rows (README, "Tour", steps 2 to 6) written by plain SQL: the database itself
// refuses bad rows with a message naming the column and the rule, and a refused
// statement changes nothing.

describe('configuration rows are checked by the database', () => {
  let t: TestDatabase;
  const q = (query: SQLQuery) => t.db.query(query);

  /** Everything a refused statement could have touched. */
  async function snapshot(): Promise<unknown> {
    const [r] = await q(sql`SELECT
      (SELECT jsonb_agg(to_jsonb(h) ORDER BY h.handler) FROM espf.http_handlers h) AS http_handlers,
      (SELECT jsonb_agg(to_jsonb(h) ORDER BY h.name) FROM espf.handlers h) AS handlers,
      (SELECT jsonb_agg(to_jsonb(s) ORDER BY s.handler, s.event_type) FROM espf.subscriptions s) AS subscriptions,
      (SELECT jsonb_agg(to_jsonb(e) ORDER BY e.name) FROM espf.event_types e) AS event_types`);
    return r;
  }

  /** `statement` is refused with SQLSTATE `code`, a message naming `column` (and `mentions`), and changes nothing. */
  async function refused(statement: SQLQuery, code: string, column: string, ...mentions: string[]): Promise<void> {
    const before = await snapshot();
    let err: (Error & { code?: string; column?: string }) | undefined;
    try {
      await q(statement);
    } catch (e) {
      err = e as Error & { code?: string };
    }
    assert.ok(err, `expected the statement to be refused (${column})`);
    assert.equal(err.code, code, `SQLSTATE for ${column}: ${err.message}`);
    assert.ok(err.message.includes(column), `the message names ${column}: ${err.message}`);
    for (const m of mentions) assert.ok(err.message.includes(m), `the message mentions ${m}: ${err.message}`);
    assert.deepEqual(await snapshot(), before, 'a refused statement changes nothing');
  }

  const setHttp = (handler: string, set: SQLQuery) => sql`UPDATE espf.http_handlers SET ${set} WHERE handler = ${handler}`;

  before(async () => {
    t = await createTestDatabase();
    // A second http handler, for inserts and multi-row statements.
    await q(sql`INSERT INTO espf.handlers (name, kind) VALUES ('Crm', 'http')`);
    await q(sql`INSERT INTO espf.http_handlers (handler, url) VALUES ('Crm', '{https://crm.example.com/hook}')`);
  });
  after(async () => { await t.drop(); });

  describe('espf.http_handlers.url', () => {
    it('accepts http and https URLs (with port, path and query)', async () => {
      await q(setHttp('EventSender', sql`url = '{http://127.0.0.1:8080/events,HTTPS://prov.example.com/a/b?x=1}'`));
      await q(setHttp('EventSender', sql`url = '{}'`));
    });

    for (const bad of ['ftp://example.com/x', 'example.com/hook', 'http://', 'https:///path', 'http://exa mple.com/', 'javascript:alert(1)', '']) {
      it(`refuses ${JSON.stringify(bad)}`, async () => {
        await refused(setHttp('EventSender', sql`url = ARRAY['https://ok.example.com/', ${bad}]`), '23514', 'url');
      });
    }

    it('refuses a null element and a null list', async () => {
      await refused(setHttp('EventSender', sql`url = ARRAY['https://ok.example.com/', NULL]`), '23514', 'url');
      await refused(setHttp('EventSender', sql`url = NULL`), '23514', 'url');
    });

    it('refuses a bad URL on insert, and a multi-row update with one bad row changes no row', async () => {
      await q(sql`INSERT INTO espf.handlers (name, kind) VALUES ('Billing2', 'http')`);
      await refused(sql`INSERT INTO espf.http_handlers (handler, url) VALUES ('Billing2', '{ftp://x.example.com/}')`, '23514', 'url');
      await refused(sql`UPDATE espf.http_handlers SET url = CASE handler WHEN 'Crm' THEN '{gopher://x}'::text[] ELSE '{https://fine.example.com/}' END`,
        '23514', 'url');
    });
  });

  describe('espf.http_handlers.event_names', () => {
    it('accepts a map of espf types to the receiver\'s names, and the empty map', async () => {
      await q(setHttp('EventSender', sql`event_names = '{"Account/ID/Changed": "Account/Id/Changed", "Account/New": "account.created"}'`));
      await q(setHttp('EventSender', sql`event_names = '{}'`));
    });

    it('refuses a key that is not an espf event type, naming the key', async () => {
      await refused(setHttp('EventSender', sql`event_names = '{"Account/New": "New", "Account/Id/Changed": "Account/Id/Changed"}'`),
        '23514', 'event_names', "'Account/Id/Changed'", 'not an espf event type');
    });

    it('refuses an empty name (or one that is not a string), naming the key', async () => {
      await refused(setHttp('EventSender', sql`event_names = '{"Account/Blocked": ""}'`), '23514', 'event_names', "'Account/Blocked'", 'empty name');
      await refused(setHttp('EventSender', sql`event_names = '{"Account/Blocked": "  "}'`), '23514', 'event_names', "'Account/Blocked'", 'empty name');
      await refused(setHttp('EventSender', sql`event_names = '{"Account/Blocked": null}'`), '23514', 'event_names', "'Account/Blocked'");
      await refused(setHttp('EventSender', sql`event_names = '{"Account/Blocked": 7}'`), '23514', 'event_names', "'Account/Blocked'");
    });

    it('refuses a value that is not a JSON object, and null', async () => {
      await refused(setHttp('EventSender', sql`event_names = '["Account/New"]'`), '23514', 'event_names', 'JSON object');
      await refused(setHttp('EventSender', sql`event_names = NULL`), '23514', 'event_names');
    });
  });

  describe('espf.http_handlers.auth_method and its credentials', () => {
    it('refuses an unknown auth method', async () => {
      await refused(setHttp('EventSender', sql`auth_method = 'Digest'`), '23514', 'auth_method');
      await refused(setHttp('EventSender', sql`auth_method = 'basic'`), '23514', 'auth_method');
    });

    it('refuses Basic without a user or without a key', async () => {
      await refused(setHttp('EventSender', sql`auth_method = 'Basic', basic_auth_user = 'prov', basic_auth_key = NULL`), '23514', 'basic_auth_key');
      await refused(setHttp('EventSender', sql`auth_method = 'Basic', basic_auth_user = NULL, basic_auth_key = 'k'`), '23514', 'basic_auth_user');
      await refused(setHttp('EventSender', sql`auth_method = 'Basic', basic_auth_user = '', basic_auth_key = 'k'`), '23514', 'basic_auth_user');
      await refused(setHttp('EventSender', sql`auth_method = 'Basic'`), '23514', 'basic_auth_user');
    });

    it('refuses removing the key of a handler that uses Basic', async () => {
      await q(setHttp('Crm', sql`auth_method = 'Basic', basic_auth_user = 'prov', basic_auth_key = 's3cret'`));
      await refused(setHttp('Crm', sql`basic_auth_key = NULL`), '23514', 'basic_auth_key');
      await q(setHttp('Crm', sql`auth_method = 'None'`));
    });

    it('refuses Custom and Signature without their credentials, accepts them with', async () => {
      await refused(setHttp('EventSender', sql`auth_method = 'Custom', custom_auth_type = 'Bearer'`), '23514', 'custom_auth_credentials');
      await refused(setHttp('EventSender', sql`auth_method = 'Signature', signature_auth_key_id = 'k1'`), '23514', 'signature_auth_key');
      await q(setHttp('EventSender', sql`auth_method = 'Custom', custom_auth_type = 'Bearer', custom_auth_credentials = 'tok'`));
      await q(setHttp('EventSender', sql`auth_method = 'Signature', signature_auth_key_id = 'k1', signature_auth_key = 'secret'`));
      await q(setHttp('EventSender', sql`auth_method = 'None'`));
    });
  });

  describe('rates, timeouts and retries', () => {
    for (const [column, value] of [
      ['token_rate', '0'], ['token_rate', '-1'], ['request_timeout', '0'], ['request_timeout', '-5'],
      ['max_wait_time', '0'], ['retry_delay', '0'], ['token_burstiness', '0'], ['max_attempts', '0'],
    ] as const) {
      it(`refuses ${column} = ${value}`, async () => {
        await refused(setHttp('EventSender', sql`${sql.ident(column)} = ${sql.__dangerous__rawValue(value)}`), '23514', column);
      });
    }

    it('refuses retry_max_delay below retry_delay; accepts small positive values', async () => {
      await refused(setHttp('EventSender', sql`retry_delay = 10, retry_max_delay = 5`), '23514', 'retry_max_delay');
      await q(setHttp('EventSender', sql`token_rate = 0.5, request_timeout = 1, max_wait_time = 1, retry_delay = 0.1, retry_max_delay = 0.1`));
      await q(setHttp('EventSender', sql`token_rate = DEFAULT, request_timeout = DEFAULT, max_wait_time = DEFAULT, retry_delay = DEFAULT, retry_max_delay = DEFAULT`));
    });
  });

  describe('espf.subscriptions', () => {
    it('refuses an unknown event type (23503) and an unknown handler (23503)', async () => {
      await refused(sql`INSERT INTO espf.subscriptions (handler, event_type) VALUES ('EventSender', 'Account/Nope')`, '23503', 'event_type', 'Account/Nope');
      await refused(sql`INSERT INTO espf.subscriptions (handler, event_type) VALUES ('Nobody', 'Account/New')`, '23503', 'handler', 'Nobody');
    });

    it('lets an http handler subscribe to any type', async () => {
      await q(sql`INSERT INTO espf.subscriptions (handler, event_type) SELECT 'Crm', name FROM espf.event_types`);
      const [{ n }] = await q(sql`SELECT count(*)::int AS n FROM espf.subscriptions WHERE handler = 'Crm'`) as [{ n: number }];
      const [{ m }] = await q(sql`SELECT count(*)::int AS m FROM espf.event_types`) as [{ m: number }];
      assert.equal(n, m);
    });

    it('refuses a subscription a dispatcher cannot serve, naming what it consumes', async () => {
      await refused(sql`INSERT INTO espf.subscriptions (handler, event_type) VALUES ('CustomerToAccountsDispatcher', 'Account/New')`,
        '23514', 'event_type', 'Customer/Blocked');
      await refused(sql`INSERT INTO espf.subscriptions (handler, event_type) VALUES ('ServiceAttributeDispatcher', 'Customer/ServiceAttribute/Changed')`,
        '23514', 'event_type', 'ServiceAttribute/Changed');
      await refused(sql`INSERT INTO espf.subscriptions (handler, event_type) VALUES ('ProductToAccountsDispatcher', 'ServiceAttribute/Changed')`,
        '23514', 'event_type');
    });

    it('accepts what a dispatcher consumes, and refuses changing it to what it cannot', async () => {
      await q(sql`INSERT INTO espf.subscriptions (handler, event_type) VALUES ('CustomerToAccountsDispatcher', 'Customer/Blocked')`);
      await refused(sql`UPDATE espf.subscriptions SET event_type = 'Account/Blocked'
                         WHERE handler = 'CustomerToAccountsDispatcher' AND event_type = 'Customer/Blocked'`, '23514', 'event_type');
    });
  });

  describe('espf.matrix', () => {
    it('shows + subscribed, . can subscribe, blank cannot', async () => {
      const state = async (handler: string, type: string) =>
        (await q(sql`SELECT state FROM espf.matrix WHERE handler = ${handler} AND event_type = ${type}`)).map((r) => r.state);
      assert.deepEqual(await state('CustomerToAccountsDispatcher', 'Customer/Blocked'), ['+']);
      assert.deepEqual(await state('CustomerToAccountsDispatcher', 'Customer/Unblocked'), ['.']);
      assert.deepEqual(await state('CustomerToAccountsDispatcher', 'Account/New'), [' ']);
      assert.deepEqual(await state('Crm', 'Account/Status/Suspend'), ['+']);
      assert.deepEqual(await state('EventSender', 'Account/New'), ['.']);
      const [{ n }] = await q(sql`SELECT count(*)::int AS n FROM espf.matrix`) as [{ n: number }];
      const [{ m }] = await q(sql`SELECT (SELECT count(*) FROM espf.event_types) * (SELECT count(*) FROM espf.handlers) AS m`) as [{ m: number }];
      assert.equal(n, Number(m), 'one row per (type, handler)');
    });
  });

  describe('enabling an http handler', () => {
    it('is refused while its url list is empty', async () => {
      await q(setHttp('EventSender', sql`url = '{}'`));
      await refused(sql`UPDATE espf.handlers SET enabled = true WHERE name = 'EventSender'`, '23514', 'url');
      await refused(sql`UPDATE espf.handlers SET enabled = true WHERE kind = 'http'`, '23514', 'url');
    });

    it('is refused for a new http handler without a row of espf.http_handlers', async () => {
      await refused(sql`INSERT INTO espf.handlers (name, kind, enabled) VALUES ('Fresh', 'http', true)`, '23514', 'url');
    });

    it('works once a url is set; the url list of an enabled handler cannot then be emptied', async () => {
      await q(setHttp('EventSender', sql`url = '{https://prov.example.com/events}'`));
      await q(sql`UPDATE espf.handlers SET enabled = true WHERE name = 'EventSender'`);
      await refused(setHttp('EventSender', sql`url = '{}'`), '23514', 'url');
      await q(sql`UPDATE espf.handlers SET enabled = false WHERE name = 'EventSender'`);
      await q(setHttp('EventSender', sql`url = '{}'`));
    });

    it('the http_handlers row of an enabled handler cannot be deleted; deleting the handler itself takes it along', async () => {
      await q(sql`UPDATE espf.handlers SET enabled = true WHERE name = 'Crm'`);
      await refused(sql`DELETE FROM espf.http_handlers WHERE handler = 'Crm'`, '23514', 'url');
      await q(sql`INSERT INTO espf.handlers (name, kind, enabled) VALUES ('Gone', 'http', false)`);
      await q(sql`INSERT INTO espf.http_handlers (handler, url) VALUES ('Gone', '{https://gone.example.com/}')`);
      await q(sql`UPDATE espf.handlers SET enabled = true WHERE name = 'Gone'`);
      await q(sql`DELETE FROM espf.handlers WHERE name = 'Gone'`);
      assert.deepEqual(await q(sql`SELECT handler FROM espf.http_handlers WHERE handler = 'Gone'`), []);
      await q(sql`UPDATE espf.handlers SET enabled = false WHERE name = 'Crm'`);
      await q(sql`DELETE FROM espf.http_handlers WHERE handler = 'Crm'`);
      await q(sql`INSERT INTO espf.http_handlers (handler, url) VALUES ('Crm', '{https://crm.example.com/hook}')`);
    });

    it('dispatchers need no url', async () => {
      await q(sql`UPDATE espf.handlers SET enabled = true WHERE name = 'ServiceAttributeDispatcher'`);
      await q(sql`UPDATE espf.handlers SET enabled = false WHERE name = 'ServiceAttributeDispatcher'`);
    });
  });

  describe('espf.handlers', () => {
    it('refuses an unknown kind and a kind change', async () => {
      await refused(sql`INSERT INTO espf.handlers (name, kind) VALUES ('Odd', 'smtp')`, '23514', 'kind');
      await refused(sql`UPDATE espf.handlers SET kind = 'dispatcher' WHERE name = 'Crm'`, '23514', 'kind');
    });
  });
});
