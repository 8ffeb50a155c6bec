import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from '@databases/pg';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { ROOT } from '../src/paths.ts';
import { CHROMIUM, launchChromium, warnNoChromium } from './support/chromium.ts';
import { ADMIN, enableConsole, startConsoleServer, VIEWER } from './support/console.ts';
import type { TestDatabase } from './support/database.ts';
import { deliveryFixture } from './support/fixture.ts';
import { eventually, type TestReceiver } from './support/receiver.ts';
import { addAccounts, seedCustomer } from './support/sender.ts';

/**
 * The console in a real headless Chromium (Debian's chromium, driven by
 * playwright-core, which never downloads a browser): against a real espf run
 * HTTP server, a real sender and a real receiver on 127.0.0.1.
 * Screenshots go to docs/console-*.png with ESPF_CONSOLE_SCREENSHOTS=1 (docs/console.md).
 */
const SHOTS = process.env.ESPF_CONSOLE_SCREENSHOTS === '1' ? path.join(ROOT, 'docs') : mkdtempSync(path.join(os.tmpdir(), 'espf-shots-'));

describe('console in a real browser (headless Chromium)', function () {
  this.timeout(120_000);
  let t: TestDatabase;
  let rx: TestReceiver;
  let web: Awaited<ReturnType<typeof startConsoleServer>>;
  let browser: Browser;
  let admin: BrowserContext;
  let page: Page;
  let failedAccount: number;
  let failedEvent: number;
  let failing = true;
  const savedLogDir = process.env.ESPF_LOG_DIR;

  before(function () {
    if (!CHROMIUM) {
      warnNoChromium();
      this.skip();
    }
  });
  // Registered before the fixture's: the browser and the console server go before the sender and the database.
  after(async () => {
    await browser?.close();
    await web?.server.close();
  });
  const f = deliveryFixture({
    types: ['Account/New'],
    settings: { max_attempts: 2 },
    seed: false,
    prepare: async ({ t, rx }) => {
      await enableConsole(t.db);
      rx.respond = (r) => (failing && r.json.event_type === 'Account/New' && String(r.json.variables.id).startsWith('+1555999') ? { status: 500, body: '{"error":"HSS is down"}' } : { status: 200 });
    },
  });
  after(() => {
    if (savedLogDir === undefined) delete process.env.ESPF_LOG_DIR; else process.env.ESPF_LOG_DIR = savedLogDir;
  });

  before(async () => {
    ({ t, rx } = f);
    const { run } = f;
    process.env.ESPF_LOG_DIR = run.logDir; // the console reads this instance's provisioning.log
    web = await startConsoleServer(t.db, t.url, run.sender);
    const ids = await seedCustomer(t.db, { name: 'ACME Mobile' });
    await addAccounts(t.db, ids, 3, '+1555000');
    failedAccount = (await addAccounts(t.db, ids, 1, '+1555999'))[0]!;
    const [d] = await eventually(async () => {
      const rows = await t.db.query(sql`SELECT i_event FROM espf.event_deliveries WHERE i_account = ${failedAccount} AND state = 'FAILED'`);
      return rows.length ? rows : undefined;
    }, 20_000, 'the delivery to fail at the receiver');
    failedEvent = d.i_event;
    await eventually(async () => (await t.db.query(sql`SELECT 1 FROM espf.event_deliveries WHERE state = 'DELIVERED'`)).length === 3, 20_000, 'three deliveries');
    browser = await launchChromium();
    admin = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    page = await admin.newPage();
  });

  const shot = (p: Page, name: string) => p.screenshot({ path: path.join(SHOTS, `console-${name}.png`), fullPage: false });

  async function logIn(p: Page, who: { user: string; password: string }): Promise<void> {
    await p.goto(`${web.base}/console/`);
    await p.getByLabel('User').fill(who.user);
    await p.getByLabel('Password').fill(who.password);
    await p.getByRole('button', { name: 'Log in' }).click();
    await p.waitForURL(`${web.base}/console/`);
  }

  it('refuses a wrong password, then logs in with the keyboard alone and shows the failure in red on the overview', async () => {
    await page.goto(`${web.base}/console/`);
    assert.equal(new URL(page.url()).pathname, '/console/login');
    await shot(page, 'login');
    await page.getByLabel('User').fill(ADMIN.user);
    await page.getByLabel('Password').fill('not the password');
    await page.getByRole('button', { name: 'Log in' }).click();
    assert.match(await page.getByRole('alert').textContent() ?? '', /Wrong user name or password/);
    // The keyboard: the user field has focus, Tab to the password, Enter to log in.
    await page.getByLabel('User').fill('');
    await page.getByLabel('User').focus();
    await page.keyboard.type(ADMIN.user);
    await page.keyboard.press('Tab');
    await page.keyboard.type(ADMIN.password);
    await page.keyboard.press('Enter');
    await page.waitForURL(`${web.base}/console/`);
    const row = page.locator('tr', { has: page.getByRole('link', { name: 'EventSender', exact: true }) });
    assert.match(await row.getAttribute('class') ?? '', /bad/);
    assert.match(await row.textContent() ?? '', /HTTP 500/);
    await shot(page, 'overview');
  });

  it('toggles a subscription on the matrix and the row changes in the database', async () => {
    await page.getByRole('link', { name: 'Matrix' }).click();
    const cell = page.getByRole('button', { name: 'EventSender not subscribed to Account/Blocked' });
    await cell.click();
    await page.waitForURL(/done=/);
    assert.match(await page.getByRole('status').textContent() ?? '', /EventSender subscribed to Account\/Blocked/);
    assert.equal(await page.getByRole('button', { name: 'EventSender subscribed to Account/Blocked' }).getAttribute('aria-pressed'), 'true');
    const rows = await t.db.query(sql`SELECT 1 FROM espf.subscriptions WHERE handler = 'EventSender' AND event_type = 'Account/Blocked'`);
    assert.equal(rows.length, 1);
    await shot(page, 'matrix');
    await page.getByRole('button', { name: 'EventSender subscribed to Account/Blocked' }).click();
    await page.waitForURL(/done=unsub/);
    assert.equal((await t.db.query(sql`SELECT 1 FROM espf.subscriptions WHERE handler = 'EventSender' AND event_type = 'Account/Blocked'`)).length, 0);
  });

  it('shows the database message at the URL field for a bad URL, and a test event gets the receiver\'s answer', async () => {
    await page.goto(`${web.base}/console/handlers/EventSender`);
    await page.getByLabel(/^URLs/).fill('ftp://files.example/x');
    await page.getByRole('button', { name: 'Save' }).click();
    const err = page.locator('#f_url_err');
    assert.match(await err.textContent() ?? '', /espf\.http_handlers\.url: 'ftp:\/\/files\.example\/x' is not an http\(s\) URL/);
    assert.equal(await page.getByLabel(/^URLs/).getAttribute('aria-invalid'), 'true');
    const [row] = await t.db.query(sql`SELECT url FROM espf.http_handlers WHERE handler = 'EventSender'`);
    assert.deepEqual(row.url, [rx.url]);
    await page.locator('#f_url').scrollIntoViewIfNeeded();
    await shot(page, 'handler');

    const before = rx.arrived.length;
    await page.goto(`${web.base}/console/handlers/EventSender`);
    await page.getByRole('button', { name: 'Send a test event' }).click();
    assert.match(await page.locator('table').first().textContent() ?? '', /HTTP 200/);
    const test = rx.arrived.slice(before).find((r) => r.json.event_type === 'espf/Test');
    assert.ok(test, 'the receiver got the test event');
  });

  it('finds the subscriber whose delivery failed at the receiver, resends it, and it arrives', async () => {
    await page.getByRole('link', { name: 'Subscribers' }).click();
    await page.getByLabel('i_account, account id or i_customer').fill('+15559991');
    await page.keyboard.press('Enter');
    await page.waitForURL(`${web.base}/console/subscribers/${failedAccount}`);
    const row = page.locator(`tr[data-delivery="${failedEvent}|EventSender"]`);
    assert.match(await row.textContent() ?? '', /FAILED/);
    assert.match(await row.textContent() ?? '', /HTTP 500/);
    assert.match(await page.locator('body').textContent() ?? '', /HSS is down/);
    await shot(page, 'subscriber');

    failing = false;
    await row.getByRole('button', { name: `Resend event ${failedEvent} to EventSender` }).click();
    await page.waitForURL(/done=resend/);
    assert.match(await page.getByRole('status').textContent() ?? '', /1 delivery re-queued/);
    await rx.waitFor(() => rx.received.some((r) => r.json.variables.i_event === failedEvent), 20_000, 'the resent event');
    await eventually(async () => {
      const [d] = await t.db.query(sql`SELECT state FROM espf.event_deliveries WHERE i_event = ${failedEvent} AND handler = 'EventSender'`);
      return d.state === 'DELIVERED';
    }, 15_000, 'DELIVERED');
    await page.reload();
    assert.match(await page.locator(`tr[data-delivery="${failedEvent}|EventSender"]`).textContent() ?? '', /DELIVERED/);
  });

  it('refuses "resend all matching" without a narrowing filter; with one it shows the count, asks to confirm, re-queues with progress, audited', async () => {
    await page.goto(`${web.base}/console/deliveries`);
    await page.getByRole('button', { name: 'Resend all matching (finished ones)' }).click();
    assert.match(await page.getByRole('alert').textContent() ?? '', /needs a narrower filter: state FAILED, or a handler and a "Created from" time/);
    const [{ n: requeued }] = await t.db.query(sql`SELECT count(*)::int AS n FROM espf.event_deliveries WHERE requeued OR state = 'PENDING'`);
    assert.equal(requeued, 0, 'nothing re-queued');

    await page.goto(`${web.base}/console/deliveries`);
    await page.getByLabel('State').selectOption('DELIVERED');
    await page.getByLabel('Handler').selectOption('EventSender');
    await page.getByLabel('Created from (UTC)').fill('2000-01-01T00:00');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(/state=DELIVERED/);
    assert.equal(await page.locator('tbody tr').count(), 4);
    await shot(page, 'deliveries');
    const before = rx.received.length;
    await page.getByRole('button', { name: 'Resend all matching (finished ones)' }).click();
    assert.match(await page.getByRole('status').textContent() ?? '', /4 finished deliveries match handler EventSender, state DELIVERED, since 2000-01-01T00:00/);
    assert.equal(rx.received.length, before, 'nothing sent before the count is confirmed');
    await shot(page, 'resend-confirm');
    await page.getByRole('button', { name: 'Re-queue 4 deliveries' }).click();
    await page.waitForURL(/\/console\/jobs\//);
    await page.getByText(/Done\. 4 of 4 deliveries re-queued/).waitFor({ timeout: 15_000 });
    await rx.waitFor(() => rx.received.length >= before + 4, 20_000, 'four resent events');
    const audit = await t.db.query(sql`SELECT user_name, action, before, after FROM espf.console_audit WHERE action LIKE 'resend matching%' ORDER BY i_audit`);
    assert.deepEqual(audit.map((a) => [a.user_name, a.action]), [[ADMIN.user, 'resend matching'], [ADMIN.user, 'resend matching done']]);
    assert.deepEqual(audit[0].before.filter, { handler: 'EventSender', state: 'DELIVERED', since: '2000-01-01T00:00' });
    assert.deepEqual(audit[0].after, { matching: 4, cap: 100000 });
    assert.equal(audit[1].after.requeued, 4);
  });

  it('lists the event rules as espf rule check sees them and shows the trigger a rule compiles to', async () => {
    await page.getByRole('link', { name: 'Rules' }).click();
    assert.match(await page.getByRole('status').textContent() ?? '', /espf rule check: all \d+ rules compile/);
    const [rule] = await t.db.query(sql`SELECT name FROM espf.event_rules WHERE event_type = 'Account/New' ORDER BY name LIMIT 1`);
    await page.getByRole('link', { name: rule.name, exact: true }).click();
    assert.match(await page.locator('pre.sql').textContent() ?? '', /CREATE[\s\S]*TRIGGER/);
    await shot(page, 'rules');
  });

  it('a viewer sees the pages and cannot change anything, even with a forced click', async () => {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    try {
      const p = await ctx.newPage();
      await logIn(p, VIEWER);
      await p.goto(`${web.base}/console/matrix`);
      const cell = p.getByRole('button', { name: 'EventSender not subscribed to Account/Blocked' });
      assert.equal(await cell.isDisabled(), true);
      await cell.evaluate((b) => (b as HTMLButtonElement).removeAttribute('disabled'));
      await cell.click();
      assert.match(await p.getByRole('alert').textContent() ?? '', /victor is a viewer; only an admin can change anything/);
      assert.equal((await t.db.query(sql`SELECT 1 FROM espf.subscriptions WHERE handler = 'EventSender' AND event_type = 'Account/Blocked'`)).length, 0);
      await p.goto(`${web.base}/console/handlers/EventSender`);
      assert.equal(await p.getByRole('button', { name: 'Save' }).isDisabled(), true);
    } finally {
      await ctx.close();
    }
  });

  it('fits a phone-sized screen without sideways scrolling of the page', async () => {
    const ctx = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
    try {
      const p = await ctx.newPage();
      await logIn(p, ADMIN);
      for (const where of ['/console/', `/console/subscribers/${failedAccount}`, '/console/deliveries?state=FAILED', '/console/handlers/EventSender']) {
        await p.goto(`${web.base}${where}`);
        const width = await p.evaluate(() => document.documentElement.scrollWidth);
        assert.ok(width <= 392, `${where}: the page is ${width} px wide on a 390 px screen`);
      }
      await p.goto(`${web.base}/console/subscribers/${failedAccount}`);
      await shot(p, 'phone');
    } finally {
      await ctx.close();
    }
  });
});
