import assert from 'node:assert/strict';
import { sql } from '@databases/pg';
import type { Browser, Page } from 'playwright-core';
import { ADMIN, enableConsole, startConsoleServer } from './support/console.ts';
import { CHROMIUM, launchChromium, warnNoChromium } from './support/chromium.ts';
import { createTestDatabase, type TestDatabase } from './support/database.ts';

/**
 * The overview in a real headless Chromium shows the numbers of a known set of
 * deliveries, read from espf.delivery_minutes (sql/420_delivery_minutes.sql):
 * delivered per minute, failed in 24 hours, waiting, and the 6-hour charts.
 */
describe('console overview in a real browser (headless Chromium)', function () {
  this.timeout(120_000);
  let t: TestDatabase;
  let web: Awaited<ReturnType<typeof startConsoleServer>>;
  let browser: Browser;
  let page: Page;

  before(async function () {
    if (!CHROMIUM) {
      warnNoChromium();
      this.skip();
    }
    t = await createTestDatabase();
    await enableConsole(t.db);
    // EventSender: 30 delivered now, 60 two hours ago (one minute), 5 failed 30 minutes
    // ago, 3 failed 30 hours ago (not in the 24 hours), 4 pending, 6 to retry.
    await t.db.query(sql`INSERT INTO espf.events (i_event, event_type, variables)
                         SELECT g, 'Account/Blocked', jsonb_build_object('i_event', g, 'i_account', g) FROM generate_series(1, 108) g`);
    await t.db.query(sql`
      INSERT INTO espf.event_deliveries (i_event, handler, state, event_type, order_key, i_account, instance, attempts, last_error, last_attempt_at, finished_at)
      SELECT g, 'EventSender', s.state, 'Account/Blocked', 'a:' || g, g, 'main', 1,
             CASE WHEN s.state IN ('FAILED', 'RETRY') THEN 'HTTP 503' END, s.at, CASE WHEN s.state NOT IN ('PENDING', 'RETRY') THEN s.at END
        FROM generate_series(1, 108) g,
             LATERAL (SELECT CASE WHEN g <= 30 THEN 'DELIVERED' WHEN g <= 90 THEN 'DELIVERED' WHEN g <= 95 THEN 'FAILED'
                                  WHEN g <= 98 THEN 'FAILED' WHEN g <= 102 THEN 'PENDING' ELSE 'RETRY' END AS state,
                             CASE WHEN g <= 30 THEN now() WHEN g <= 90 THEN date_trunc('minute', now() - interval '2 hours')
                                  WHEN g <= 95 THEN now() - interval '30 minutes' WHEN g <= 98 THEN now() - interval '30 hours'
                                  ELSE now() - interval '1 minute' END AS at) s`);
    web = await startConsoleServer(t.db, t.url);
    browser = await launchChromium();
    page = await (await browser.newContext({ viewport: { width: 1280, height: 800 } })).newPage();
  });
  after(async () => {
    await browser?.close();
    await web?.server.close();
    await t?.drop();
  });

  it('shows delivered per minute, failed in 24 hours, waiting and the charts of the known deliveries', async () => {
    await page.goto(`${web.base}/console/`);
    await page.getByLabel('User').fill(ADMIN.user);
    await page.getByLabel('Password').fill(ADMIN.password);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.waitForURL(`${web.base}/console/`);
    const row = page.locator('tr', { has: page.getByRole('link', { name: 'EventSender', exact: true }) });
    const cells = await row.locator('td').allTextContents();
    // Instance, delivered /min, failed 24 h, waiting, oldest, last error, accounts not OK, charts
    const perMin = Number(cells[1]);
    assert.ok(perMin >= 5 && perMin <= 6, `30 deliveries in the last 5 to 6 whole minutes: ${cells[1]} per minute`);
    assert.equal(cells[2]!.trim(), '5');
    assert.match(cells[3]!, /^10\s*4 pending, 6 retry$/);
    assert.match(cells[5]!, /HTTP 503/);
    assert.match(await row.getAttribute('class') ?? '', /bad/);
    const titles = await row.locator('svg.spark title').allTextContents();
    assert.deepEqual(titles, [
      'EventSender delivered, last 6 hours: 90 in all, at most 60 per bucket',
      'EventSender failed, last 6 hours: 5 in all, at most 5 per bucket',
    ]);
  });
});
