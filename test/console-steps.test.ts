// The handler page's read-only section "Request steps" (src/console/pages/handler-steps.ts):
// the rows of espf.http_steps as stored, and the compile check of `espf handler check`,
// over real HTTP against a real database, logged in as a browser does (postLogin).
import assert from 'node:assert/strict';
import { sql } from '@databases/pg';
import { ADMIN, consoleHttp, consoleOnNewDatabase, VIEWER } from './support/console.ts';
import type { TestDatabase } from './support/database.ts';

describe('console: the request steps of an http handler', function () {
  let t: TestDatabase;
  let base = '';
  let close: () => Promise<void>;
  const http = consoleHttp(() => base);
  const SECRET_VALUE = 'hss-key-that-must-not-show-0f3a9c';
  const saved = process.env.ESPF_SECRET_CONSOLE_STEPS_KEY;

  before(async () => {
    ({ t, base, close } = await consoleOnNewDatabase());
    process.env.ESPF_SECRET_CONSOLE_STEPS_KEY = SECRET_VALUE;
    await t.db.query(sql`INSERT INTO espf.handlers (name, kind) VALUES ('HSS', 'http'), ('Broken', 'http')`);
    await t.db.query(sql`INSERT INTO espf.http_handlers (handler, url) VALUES
      ('HSS', '{https://hss.example.com/api}'), ('Broken', '{https://broken.example.com/}')`);
    await t.db.query(sql`INSERT INTO espf.http_steps (handler, event_type, step, name, method, path, headers, body, success_when, refuse_when) VALUES
      ('HSS', 'Account/New', 1, 'auc', 'GET', '/auc/imsi/{variables.imsi}',
       '{"Provisioning-Key": "env:ESPF_SECRET_CONSOLE_STEPS_KEY", "X-Trace": "\\"<b>\\" & variables.i_account"}', NULL,
       'status = 200 and body != null', NULL),
      ('HSS', 'Account/New', 2, 'sub', 'PUT', '/subscriber/', '{}',
       '{"imsi": variables.imsi, "auc_id": step.auc.body.auc_id}', NULL, 'status = 400'),
      ('Broken', 'Account/New', 3, NULL, 'POST', '/x', '{}', '{"a": variables.', NULL, NULL)`);
  });
  after(async () => {
    if (saved === undefined) delete process.env.ESPF_SECRET_CONSOLE_STEPS_KEY;
    else process.env.ESPF_SECRET_CONSOLE_STEPS_KEY = saved;
    await close?.();
    await t?.drop();
  });

  /** The page's "Request steps" section (from its heading to the end of the main content). */
  async function stepsOf(handler: string, who = ADMIN): Promise<{ page: string; section: string }> {
    const { cookie } = await http.login(who);
    const r = await http.get(cookie, `/console/handlers/${handler}`);
    assert.equal(r.status, 200, r.text);
    const at = r.text.indexOf('<h2>Request steps</h2>');
    assert.ok(at >= 0, 'the page has the section');
    return { page: r.text, section: r.text.slice(at) };
  }

  it('shows a handler with two steps: number, method, path, headers, body and success rules, and that they compile', async () => {
    const { section } = await stepsOf('HSS');
    assert.match(section, /<p class="good">all steps compile<\/p>/);
    assert.match(section, /<h3>Account\/New<\/h3>/);
    assert.match(section, /<td class="num">1 <span class="muted">\(auc\)<\/span><\/td><td>GET<\/td><td><code>\/auc\/imsi\/\{variables\.imsi\}<\/code><\/td>/);
    assert.match(section, /<td class="num">2 <span class="muted">\(sub\)<\/span><\/td><td>PUT<\/td><td><code>\/subscriber\/<\/code><\/td>/);
    assert.ok(section.includes('<code>{&quot;imsi&quot;: variables.imsi, &quot;auc_id&quot;: step.auc.body.auc_id}</code>'), section);
    assert.ok(section.includes('success_when: <code>status = 200 and body != null</code>'), section);
    assert.ok(section.includes('success_when: <span class="muted">any 2xx</span></div><div>refuse_when: <code>status = 400</code>'), section);
    // text of the rows is escaped through the one template: no markup of theirs reaches the page
    assert.ok(section.includes('X-Trace: &quot;&lt;b&gt;&quot; &amp; variables.i_account'), section);
    assert.ok(!section.includes('"<b>"'), section);
  });

  it('shows a secret header as its env: reference, never the value of the variable', async () => {
    for (const who of [ADMIN, VIEWER]) {
      const { page, section } = await stepsOf('HSS', who);
      assert.ok(section.includes('<code>Provisioning-Key: env:ESPF_SECRET_CONSOLE_STEPS_KEY</code>'), section);
      assert.ok(!page.includes(SECRET_VALUE), `${who.user}: the secret is not on the page`);
    }
  });

  it('shows each expression that does not compile, naming handler, type, step and field, as espf handler check does', async () => {
    const { section } = await stepsOf('Broken');
    assert.ok(!section.includes('all steps compile'), section);
    assert.match(section, /<ul class="bad"><li>handler Broken, type Account\/New, step 3 \(body\): [^<]+<\/li><\/ul>/);
    assert.match(section, /<td class="num">3<\/td><td>POST<\/td>/);
  });

  it('a handler without steps says it sends the EventSender body', async () => {
    const { section } = await stepsOf('EventSender');
    assert.ok(section.startsWith('<h2>Request steps</h2>\n<p>No request steps: the EventSender body (docs/handlers.md)</p>'), section);
    assert.ok(!section.includes('<table'), 'no table of steps');
  });
});
