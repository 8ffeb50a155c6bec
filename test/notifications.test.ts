import assert from 'node:assert/strict';
import net from 'node:net';
import { Writable } from 'node:stream';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { SMTPServer } from 'smtp-server';
import { sql } from '@databases/pg';
import type { Db } from '../src/db/connect.ts';
import { runDigest } from '../src/notify/digest.ts';
import type { TestDatabase } from './support/database.ts';
import { deliveryFixture, type SenderRun } from './support/fixture.ts';
import { eventually, type TestReceiver } from './support/receiver.ts';

interface ReceivedMail {
  readonly from: string;
  readonly to: string[];
  readonly user: string | undefined;
  readonly headers: Record<string, string>;
  readonly body: string;
}

/** A real SMTP server on 127.0.0.1 (no TLS; AUTH allowed in clear, optional) that keeps what it receives. */
class TestSmtpServer {
  readonly mails: ReceivedMail[] = [];
  readonly logins: { user: string; pass: string }[] = [];
  port = 0;
  private readonly server = new SMTPServer({
    authOptional: true,
    allowInsecureAuth: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onAuth: (auth, _session, cb) => {
      this.logins.push({ user: auth.username ?? '', pass: auth.password ?? '' });
      cb(null, { user: auth.username });
    },
    onData: (stream, session, cb) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        this.mails.push(parseMail(Buffer.concat(chunks).toString('utf8'), session));
        cb();
      });
    },
  });

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.server.address() as AddressInfo).port;
    return this;
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

function parseMail(raw: string, session: { envelope: { mailFrom: false | { address: string }; rcptTo: { address: string }[] }; user?: string }): ReceivedMail {
  const split = raw.indexOf('\r\n\r\n');
  const head = raw.slice(0, split).replace(/\r\n[ \t]+/g, ' ');
  const headers: Record<string, string> = {};
  for (const line of head.split('\r\n')) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
  }
  let body = raw.slice(split + 4);
  const cte = (headers['content-transfer-encoding'] ?? '7bit').toLowerCase();
  if (cte === 'quoted-printable') {
    body = Buffer.from(body.replace(/=\r\n/g, '').replace(/=([0-9A-F]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('utf8');
  } else if (cte === 'base64') {
    body = Buffer.from(body, 'base64').toString('utf8');
  }
  return {
    from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
    to: session.envelope.rcptTo.map((r) => r.address),
    user: session.user,
    headers,
    body: body.replace(/\r\n/g, '\n'),
  };
}

/** A real pino logger writing JSON lines into an array. */
function capturingLogger(): { log: pino.Logger; lines: Record<string, unknown>[]; text: () => string } {
  const raw: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) { raw.push(...chunk.toString('utf8').split('\n').filter(Boolean)); cb(); },
  });
  return {
    log: pino({ level: 'debug' }, stream),
    get lines() { return raw.map((l) => JSON.parse(l) as Record<string, unknown>); },
    text: () => raw.join('\n'),
  };
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** The digest is due again, as if the last one went out long ago. */
async function digestDue(db: Db): Promise<void> {
  await db.query(sql`UPDATE espf.maintenance_runs SET last_run_at = '-infinity' WHERE task = 'digest'`);
}

describe('failure e-mails', function () {
  const SECRET = 'pw-Zq81-secret';
  const ENV = 'ESPF_SECRET_TEST_SMTP_URL';
  const f = deliveryFixture({
    types: ['Account/New'],
    settings: { max_attempts: 2 },
    sender: false,   // started by the test that needs it
    prepare: async ({ rx }) => { rx.respond = () => ({ status: 500, body: '{"error":"down"}' }); },
  });
  let t: TestDatabase;
  let smtp: TestSmtpServer;
  let rx: TestReceiver;
  let run: SenderRun | undefined;
  let ids: { i_product: number; i_customer: number };
  const quiet = pino({ level: 'silent' });

  before(async () => {
    ({ t, rx, ids } = f);
    smtp = await new TestSmtpServer().listen();
    process.env[ENV] = `smtp://espf:${SECRET}@127.0.0.1:${smtp.port}`;
  });
  after(async () => {
    await smtp?.close();
    delete process.env[ENV];
  });

  async function newAccount(id: string): Promise<number> {
    const [a] = await t.db.query(sql`INSERT INTO billing.account (id, i_customer, i_product) VALUES (${id}, ${ids.i_customer}, ${ids.i_product}) RETURNING i_account`);
    return a.i_account;
  }

  it('is off by default: no pass, nothing claimed', async () => {
    const [n] = await t.db.query(sql`SELECT enabled, digest_interval::text, unreachable_after::text FROM espf.notifications`);
    assert.deepEqual(n, { enabled: false, digest_interval: '00:15:00', unreachable_after: '00:05:00' });
    const r = await runDigest({ db: t.db, log: quiet, instance: 'main' });
    assert.deepEqual(r, { ran: false, reason: 'disabled', sent: false, failed: 0, unreachable: 0, lagging: 0 });
  });

  it('refuses bad rows naming the column and the rule, without quoting an SMTP password', async () => {
    await assert.rejects(t.db.query(sql`UPDATE espf.notifications SET smtp_url = 'http://u:hunter2@mail.example'`), (err: Error) => {
      assert.match(err.message, /espf\.notifications\.smtp_url: must be smtp:\/\//);
      assert.ok(!err.message.includes('hunter2'), err.message);
      return true;
    });
    await assert.rejects(t.db.query(sql`UPDATE espf.notifications SET enabled = true`), /espf\.notifications\.enabled: e-mails cannot be enabled without smtp_url, mail_from and at least one of recipients/);
    await assert.rejects(t.db.query(sql`UPDATE espf.notifications SET recipients = '{noc}'`), /espf\.notifications\.recipients: 'noc' is not an e-mail address/);
    await assert.rejects(t.db.query(sql`UPDATE espf.notifications SET mail_from = 'espf'`), /espf\.notifications\.mail_from: 'espf' is not an e-mail address/);
    await assert.rejects(t.db.query(sql`UPDATE espf.notifications SET digest_interval = '0'`), /espf\.notifications\.digest_interval: must be > 0/);
    await assert.rejects(t.db.query(sql`UPDATE espf.notifications SET unreachable_after = '-5 minutes'`), /espf\.notifications\.unreachable_after: must be > 0/);
    await assert.rejects(t.db.query(sql`INSERT INTO espf.notifications (id) VALUES (false)`), /notifications_one_row/);
  });

  it('sends nothing when nothing failed', async () => {
    await t.db.query(sql`
      UPDATE espf.notifications
         SET enabled = true, smtp_url = ${`env:${ENV}`}, mail_from = 'espf <espf@example.test>',
             recipients = '{noc@example.test,oncall@example.test}'`);
    await digestDue(t.db);
    const r = await runDigest({ db: t.db, log: quiet, instance: 'main' });
    assert.deepEqual(r, { ran: true, sent: false, failed: 0, unreachable: 0, lagging: 0 });
    assert.equal(smtp.mails.length, 0);
  });

  it('e-mails a digest after a delivery fails for good, with the SMTP password read from env: and never logged', async () => {
    run = await f.startSender();
    const acct = await newAccount('+15550101');
    const failed = await eventually(async () => {
      const [d] = await t.db.query(sql`SELECT * FROM espf.event_deliveries WHERE i_account = ${acct} AND state = 'FAILED'`);
      return d;
    }, 15_000, 'the delivery to fail for good');
    assert.equal(failed.attempts, 2);

    const cap = capturingLogger();
    await digestDue(t.db);
    const r = await runDigest({ db: t.db, log: cap.log, instance: 'main' });
    assert.deepEqual(r, { ran: true, sent: true, failed: 1, unreachable: 0, lagging: 0 });
    assert.equal(smtp.mails.length, 1);
    const mail = smtp.mails[0]!;
    assert.equal(mail.from, 'espf@example.test');
    assert.deepEqual(mail.to, ['noc@example.test', 'oncall@example.test']);
    assert.deepEqual(smtp.logins, [{ user: 'espf', pass: SECRET }], 'logged in with the URL read from the environment');
    assert.equal(mail.headers.subject, 'espf: 1 delivery failed for good');
    assert.match(mail.body, new RegExp(`i_event ${failed.i_event}\\s+Account/New\\s+handler EventSender\\s+i_account ${acct}\\s+attempts 2\\s+last HTTP 500`));
    assert.ok(!mail.body.includes(SECRET));
    assert.ok(cap.lines.some((l) => l.task === 'digest' && l.msg === 'failure e-mail sent' && l.failed === 1));
    assert.ok(!cap.text().includes(SECRET), 'no secret in the log');
    const [runRow] = await t.db.query(sql`SELECT last_notified_at, last_result FROM espf.maintenance_runs WHERE task = 'digest'`);
    assert.ok(runRow.last_notified_at);
    assert.deepEqual(runRow.last_result, { sent: true, failed: 1, unreachable: 0, lagging: 0 });
  });

  it('sends at most one digest per digest_interval and never reports a failure twice', async () => {
    const acct = await newAccount('+15550102');
    await eventually(async () => {
      const [d] = await t.db.query(sql`SELECT 1 FROM espf.event_deliveries WHERE i_account = ${acct} AND state = 'FAILED'`);
      return d;
    }, 15_000, 'a second failure');
    const soon = await runDigest({ db: t.db, log: quiet, instance: 'other' });
    assert.equal(soon.ran, false, 'the last digest went out less than digest_interval ago');
    assert.equal(soon.reason, 'not-due');
    assert.equal(smtp.mails.length, 1);

    // A short interval set in the row: due again once it has passed since the last pass.
    await t.db.query(sql`UPDATE espf.notifications SET digest_interval = '1 second'`);
    await eventually(async () => (await runDigest({ db: t.db, log: quiet, instance: 'other' })).ran, 10_000, 'the digest to be due');
    assert.equal(smtp.mails.length, 2);
    const mail = smtp.mails[1]!;
    assert.equal(mail.headers.subject, 'espf: 1 delivery failed for good');
    assert.match(mail.body, new RegExp(`i_account ${acct}`));
    assert.ok(!mail.body.includes('+15550101') && !mail.body.match(/i_account \d+.*\n.*i_account/), 'only the new failure');
    assert.match(mail.body, /from instance other/);

    await digestDue(t.db);
    const again = await runDigest({ db: t.db, log: quiet, instance: 'main' });
    assert.deepEqual(again, { ran: true, sent: false, failed: 0, unreachable: 0, lagging: 0 }, 'nothing new to report');
    assert.equal(smtp.mails.length, 2);
    await t.db.query(sql`UPDATE espf.notifications SET digest_interval = '15 minutes'`);
  });

  it('reports a target failing for longer than unreachable_after', async () => {
    // A second http handler that retries for ever, on the same failing receiver.
    await t.db.tx(async (tx) => {
      await tx.query(sql`INSERT INTO espf.handlers (name, kind) VALUES ('Hss2', 'http')`);
      await tx.query(sql`INSERT INTO espf.http_handlers (handler, url, max_attempts, retry_delay, retry_max_delay) VALUES ('Hss2', ${[rx.url]}::text[], 100000, 0.05, 0.2)`);
      await tx.query(sql`UPDATE espf.handlers SET enabled = true WHERE name = 'Hss2'`);
      await tx.query(sql`INSERT INTO espf.subscriptions VALUES ('Hss2', 'Account/New')`);
    });
    await eventually(async () => run!.sender.httpHandlers.has('Hss2'), 10_000, 'the sender to serve Hss2');
    await t.db.query(sql`UPDATE espf.notifications SET unreachable_after = '1 second'`);
    await newAccount('+15550103');
    await eventually(async () => {
      const [u] = await t.db.query(sql`SELECT * FROM espf.unreachable_targets('1 second') WHERE handler = 'Hss2'`);
      return u;
    }, 15_000, 'Hss2 retrying for more than a second');
    await digestDue(t.db);
    const r = await runDigest({ db: t.db, log: quiet, instance: 'main' });
    assert.equal(r.sent, true);
    assert.equal(r.unreachable, 1);
    const mail = smtp.mails.at(-1)!;
    assert.match(mail.headers.subject!, /1 target unreachable/);
    assert.match(mail.body, new RegExp(`handler Hss2 \\(instance main\\)\\s+${rx.url.replace(/[/.]/g, '\\$&')}`));
    assert.match(mail.body, /1 delivery retrying since .*; last HTTP 500/);
  });

  it('includes replication slots lagging past slot_lag_warn_bytes', async () => {
    await t.db.query(sql`UPDATE espf.maintenance SET slot_lag_warn_bytes = 1000`);
    await t.db.query(sql`SELECT pg_create_logical_replication_slot('espf_idle', 'pgoutput')`);
    try {
      await t.db.query(sql`CREATE TABLE public.filler AS SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 1000) g`);
      await eventually(async () => {
        const [s] = await t.db.query(sql`SELECT 1 FROM espf.slot_lag() WHERE slot_name = 'espf_idle' AND lag_bytes > 1000`);
        return s;
      }, 10_000, 'the idle slot to lag');
      await digestDue(t.db);
      const r = await runDigest({ db: t.db, log: quiet, instance: 'main' });
      assert.equal(r.sent, true);
      assert.ok(r.lagging >= 1);
      const mail = smtp.mails.at(-1)!;
      assert.match(mail.headers.subject!, /replication slots? lagging/);
      assert.match(mail.body, /espf_idle\s+[\d.]+ (B|KiB|MiB) behind\s+NOT ACTIVE/);
    } finally {
      await t.db.query(sql`SELECT pg_drop_replication_slot('espf_idle')`);
      await t.db.query(sql`UPDATE espf.maintenance SET slot_lag_warn_bytes = 1073741824`);
    }
  });

  it('an SMTP server that does not answer: not sent, the error logged without the password, sent at the next digest', async () => {
    const before = smtp.mails.length;
    process.env[ENV] = `smtp://espf:${SECRET}@127.0.0.1:${await closedPort()}`;
    const cap = capturingLogger();
    await digestDue(t.db);
    const r = await runDigest({ db: t.db, log: cap.log, instance: 'main' });
    assert.equal(r.ran, true);
    assert.equal(r.sent, false);
    assert.equal(r.unreachable, 1, 'there was something to report');
    assert.match(r.error ?? '', /^SMTP: .*ECONNREFUSED/);
    assert.ok(!r.error!.includes(SECRET));
    const warning = cap.lines.find((l) => l.task === 'digest' && l.level === 40);
    assert.ok(warning, 'a warning');
    assert.ok(!cap.text().includes(SECRET), 'no secret in the log');
    assert.equal(smtp.mails.length, before);

    process.env[ENV] = `smtp://espf:${SECRET}@127.0.0.1:${smtp.port}`;
    await digestDue(t.db);
    const next = await runDigest({ db: t.db, log: quiet, instance: 'main' });
    assert.equal(next.sent, true);
    assert.equal(smtp.mails.length, before + 1);
  });
});
