// The example receiver (examples/receiver) fed by a real in-process sender on a real
// PostgreSQL: auth configured in espf.http_handlers is verified by the receiver's own
// code (Signature, then Basic with an env:NAME key), a wrong key is refused and retried
// until the row is fixed, and a resent i_event is answered 200 and provisioned once.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { sql } from '@databases/pg';
import { createReceiver, type LogEntry, type ProcessedEvent, type Receiver, type ReceiverOptions } from '../examples/receiver/src/server.ts';
import { deliveryFixture } from './support/fixture.ts';
import { eventually } from './support/receiver.ts';
import { configApplied, configureEventSender, startSender } from './support/sender.ts';

interface Rx {
  receiver: Receiver;
  url: string;
  logs: LogEntry[];
  /** i_event (decimal string) -> how many times the provision hook ran for it. */
  provisioned: Map<string, number>;
}

async function startReceiver(auth: ReceiverOptions['auth']): Promise<Rx> {
  const logs: LogEntry[] = [];
  const provisioned = new Map<string, number>();
  const receiver = createReceiver({
    auth,
    log: (e) => logs.push(e),
    provision: (ev: ProcessedEvent) => {
      provisioned.set(ev.i_event, (provisioned.get(ev.i_event) ?? 0) + 1);
    },
  });
  const address = await receiver.listen(0, '127.0.0.1');
  return { receiver, url: `http://127.0.0.1:${address.port}/espf`, logs, provisioned };
}


describe('example receiver end to end: espf run → examples/receiver', function () {
  let sig: Rx;
  let basic: Rx;
  const f = deliveryFixture({
    types: ['Account/New', 'Account/Blocked', 'Account/Unblocked'],
    // configureEventSender sets one column per statement: the key before the method that needs it.
    settings: { signature_auth_key_id: 'espf-2026', signature_auth_key: 'sig-key-2026', auth_method: 'Signature' },
    url: () => sig.url,
    prepare: async () => {
      sig = await startReceiver({ method: 'Signature', keys: { 'espf-2026': 'sig-key-2026' } });
      basic = await startReceiver({ method: 'Basic', user: 'hss', key: 'basic-key-from-env' });
      process.env.ESPF_SECRET_E2E_BASIC_KEY = 'basic-key-from-env';
    },
  });
  after(async () => {
    await sig?.receiver.close();
    await basic?.receiver.close();
    delete process.env.ESPF_SECRET_E2E_BASIC_KEY;
  });

  async function newAccount(id: string): Promise<number> {
    const [a] = await f.t.db.query(sql`INSERT INTO billing.account (id, i_customer, i_product) VALUES (${id}, ${f.ids.i_customer}, ${f.ids.i_product}) RETURNING i_account`);
    return Number(a.i_account);
  }

  async function delivered(iAccount: number, type: string): Promise<{ i_event: number; attempts: number; last_http_status: number }> {
    return eventually(async () => {
      const [row] = await f.t.db.query(sql`
        SELECT i_event, attempts, last_http_status FROM espf.event_deliveries
         WHERE handler = 'EventSender' AND i_account = ${iAccount} AND event_type = ${type} AND state = 'DELIVERED'`);
      return row ? { i_event: Number(row.i_event), attempts: row.attempts, last_http_status: row.last_http_status } : undefined;
    }, 15_000, `${type} of account ${iAccount} DELIVERED`);
  }

  it('Signature: the receiver verifies the hmac-sha1 header espf builds from the row, and provisions', async () => {
    const a = await newAccount('+15550001');
    const d = await delivered(a, 'Account/New');
    assert.equal(d.attempts, 1);
    assert.equal(d.last_http_status, 200);
    const p = sig.receiver.processed.find((e) => e.i_event === String(d.i_event));
    assert.ok(p, 'the receiver provisioned the event');
    assert.equal(p.event_type, 'Account/New');
    assert.equal(p.variables.i_account, a);
    assert.equal(p.variables.id, '+15550001');
    assert.deepEqual(p.actions, [`would create HSS subscriber ${a} with id +15550001 on product ${f.ids.i_product} (customer ${f.ids.i_customer})`]);
    assert.equal(sig.logs.filter((l) => l.msg === 'refused: bad auth').length, 0);
    const [s] = await f.t.db.query(sql`SELECT status, i_event FROM espf.account_provisioning_statuses WHERE i_account = ${a} AND handler = 'EventSender'`);
    assert.equal(s.status, 'OK');
    assert.equal(Number(s.i_event), d.i_event);
  });

  it('Signature with a wrong key: 401 from the receiver, retried (the account waits) until the row is fixed', async () => {
    await f.t.db.query(sql`UPDATE espf.http_handlers SET signature_auth_key = 'not-the-key' WHERE handler = 'EventSender'`);
    await configApplied(f.t.db, f.run.sender);
    const a = await newAccount('+15550002');
    await eventually(async () => {
      const [row] = await f.t.db.query(sql`SELECT state, attempts, last_http_status FROM espf.event_deliveries WHERE handler = 'EventSender' AND i_account = ${a}`);
      return row && row.state === 'RETRY' && row.last_http_status === 401 && row.attempts >= 2 ? row : undefined;
    }, 15_000, 'a RETRY row with HTTP 401');
    assert.ok(sig.logs.some((l) => l.msg === 'refused: bad auth' && l.reason === 'bad Signature'),
      `the receiver logged a bad signature: ${JSON.stringify(sig.logs.filter((l) => l.level === 'warn').slice(-1))}`);
    // The account's next event waits behind the failing one.
    await f.t.db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account = ${a}`);
    await eventually(async () => (await f.t.db.query(sql`SELECT 1 FROM espf.event_deliveries
      WHERE handler = 'EventSender' AND i_account = ${a} AND event_type = 'Account/Blocked' AND state = 'PENDING'`)).length === 1, 15_000, 'Account/Blocked waiting (PENDING)');
    assert.equal(sig.receiver.processed.some((e) => e.variables.i_account === a), false);

    await f.t.db.query(sql`UPDATE espf.http_handlers SET signature_auth_key = 'sig-key-2026' WHERE handler = 'EventSender'`);
    const d = await delivered(a, 'Account/New');
    assert.ok(d.attempts >= 3, `attempts ${d.attempts}`);
    assert.equal(d.last_http_status, 200);
    assert.equal(sig.provisioned.get(String(d.i_event)), 1);
    const b = await delivered(a, 'Account/Blocked');
    assert.equal(b.attempts, 1, 'the waiting event was not sent (and refused) while the first one failed');
    assert.deepEqual(sig.receiver.processed.filter((e) => e.variables.i_account === a).map((e) => e.event_type),
      ['Account/New', 'Account/Blocked'], 'in commit order');
  });

  it('Basic with the key as env:NAME: the receiver verifies user and key', async () => {
    await f.t.db.query(sql`UPDATE espf.http_handlers
                            SET url = ${[basic.url]}::text[], auth_method = 'Basic',
                                basic_auth_user = 'hss', basic_auth_key = 'env:ESPF_SECRET_E2E_BASIC_KEY'
                          WHERE handler = 'EventSender'`);
    await configApplied(f.t.db, f.run.sender);
    const a = await newAccount('+15550003');
    const d = await delivered(a, 'Account/New');
    assert.equal(d.attempts, 1);
    const p = basic.receiver.processed.find((e) => e.i_event === String(d.i_event));
    assert.ok(p, 'the Basic receiver provisioned the event');
    assert.equal(basic.logs.filter((l) => l.msg === 'refused: bad auth').length, 0);
    assert.equal(sig.receiver.processed.some((e) => e.i_event === String(d.i_event)), false, 'not sent to the old URL');
  });

  it('a resent i_event (delivery requeued) is answered 200 as a duplicate and provisioned once', async () => {
    const a = await newAccount('+15550004');
    await f.t.db.query(sql`UPDATE billing.account SET blocked = true WHERE i_account = ${a}`);
    const first = await delivered(a, 'Account/Blocked');
    const key = String(first.i_event);
    assert.equal(basic.provisioned.get(key), 1);
    const receivedBefore = basic.logs.filter((l) => l.msg === 'received' && String(l.i_event) === key).length;
    assert.equal(receivedBefore, 1);

    await f.t.db.query(sql`UPDATE espf.event_deliveries
                            SET state = 'PENDING', requeued = true, attempts = 0, urls_done = 0, finished_at = null
                          WHERE i_event = ${first.i_event} AND handler = 'EventSender'`);
    await eventually(async () => basic.logs.some((l) => l.msg === 'repeat of an event already provisioned; nothing to do' && String(l.i_event) === key),
      15_000, 'the receiver to see the repeat');
    const again = await delivered(a, 'Account/Blocked');
    assert.equal(again.i_event, first.i_event);
    assert.equal(again.last_http_status, 200);
    assert.equal(basic.logs.filter((l) => l.msg === 'received' && String(l.i_event) === key).length, 2, 'the event arrived twice');
    assert.equal(basic.provisioned.get(key), 1, 'provisioned once');
    assert.equal(basic.receiver.processed.filter((e) => e.i_event === key).length, 1);
    const [req] = await f.t.db.query(sql`SELECT requeued FROM espf.event_deliveries WHERE i_event = ${first.i_event} AND handler = 'EventSender'`);
    assert.equal(req.requeued, false, 'the requeued mark is cleared');

    // The later event of the same account still goes through, after the resend.
    await f.t.db.query(sql`UPDATE billing.account SET blocked = false WHERE i_account = ${a}`);
    const later = await delivered(a, 'Account/Unblocked');
    assert.ok(later.i_event > first.i_event);
    assert.equal(basic.provisioned.get(String(later.i_event)), 1);

    // provisioning.log: both attempts of the resent event, each answered 200.
    await f.run.stop();
    const lines = readFileSync(path.join(f.run.logDir, 'provisioning.log'), 'utf8').trim().split('\n')
      .map((l) => JSON.parse(l) as { i_event: number; status: number | null; url: string });
    const mine = lines.filter((l) => l.i_event === first.i_event);
    assert.equal(mine.length, 2, JSON.stringify(mine));
    assert.ok(mine.every((l) => l.status === 200 && l.url === basic.url));
  });
});
