import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { sql } from '@databases/pg';
import type { TestDatabase } from './support/database.ts';
import type { EspfProcess } from './support/child.ts';
import { deliveryFixture } from './support/fixture.ts';
import { eventually } from './support/receiver.ts';

/**
 * Receivers that misbehave (docs/security.md, hostile receivers), against `espf run` as a child
 * process: garbage instead of HTTP, a redirect, a 2xx with a 200 MB body, and
 * an answer whose body never ends. Each attempt fails (or succeeds) with a
 * clear reason in espf.event_deliveries and provisioning.log, the sender's
 * memory stays bounded, request_timeout is honoured, and other accounts go on.
 */

const HUGE = 200 * 1024 * 1024;
const REQUEST_TIMEOUT_S = 2;

interface Seen { id: string; i_event: number; at: number }

/** One HTTP server whose behaviour depends on the account id of the event (its prefix). */
class HostileReceiver {
  readonly seen: Seen[] = [];
  hugeBytesWritten = 0;
  hugeClosedEarly = false;
  redirectTarget = '';
  private server?: http.Server;
  port = 0;

  async listen(): Promise<this> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        let body: { variables?: { id?: string; i_event?: number } } = {};
        try { body = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch { /* not ours */ }
        const id = String(body.variables?.id ?? '');
        this.seen.push({ id, i_event: Number(body.variables?.i_event), at: Date.now() });
        if (id.startsWith('garbage-')) {
          // Not HTTP at all: raw bytes on the socket, then close.
          req.socket.end(Buffer.from('\x00\x17GARBAGE \xff\xfe not an HTTP answer\r\n\r\n', 'latin1'));
        } else if (id.startsWith('redirect-')) {
          res.writeHead(302, { location: this.redirectTarget, 'content-type': 'text/plain' });
          res.end('moved');
        } else if (id.startsWith('huge-')) {
          res.writeHead(200, { 'content-type': 'application/octet-stream' });
          void this.stream(res);
        } else if (id.startsWith('hang-')) {
          // Headers and the start of a body, then nothing, for ever.
          res.writeHead(200, { 'content-type': 'application/json' });
          res.write('{"status": "acc');
        } else {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end('{"ok":true}');
        }
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  /** 200 MB as fast as the client reads it (1 MiB chunks, honouring back-pressure). */
  private async stream(res: http.ServerResponse): Promise<void> {
    const chunk = Buffer.alloc(1024 * 1024, 'x');
    let closed = false;
    res.on('close', () => { closed = true; });
    while (!closed && this.hugeBytesWritten < HUGE) {
      this.hugeBytesWritten += chunk.length;
      if (!res.write(chunk)) await new Promise<void>((r) => { res.once('drain', r); res.once('close', r); });
    }
    if (closed && this.hugeBytesWritten < HUGE) this.hugeClosedEarly = true;
    if (!closed) res.end();
  }

  get url(): string { return `http://127.0.0.1:${this.port}/events`; }

  async close(): Promise<void> {
    const s = this.server;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
}

function vmRssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

describe('hostile receivers (espf run as a child process)', function () {
  this.timeout(60_000);
  let t: TestDatabase;
  let rx: HostileReceiver;
  let thief: http.Server;
  let thiefHits = 0;
  let child: EspfProcess;
  let ids: { i_product: number; i_customer: number };

  async function addAccount(id: string): Promise<number> {
    const [a] = await t.db.query(sql`INSERT INTO billing.account (id, i_customer, i_product) VALUES (${id}, ${ids.i_customer}, ${ids.i_product}) RETURNING i_account`);
    return a.i_account;
  }
  async function delivery(iAccount: number) {
    const [d] = await t.db.query(sql`SELECT * FROM espf.event_deliveries WHERE i_account = ${iAccount} AND handler = 'EventSender'`);
    return d;
  }
  async function finished(iAccount: number, what: string) {
    return eventually(async () => {
      const d = await delivery(iAccount);
      return d && (d.state === 'DELIVERED' || d.state === 'FAILED') ? d : undefined;
    }, 30_000, what);
  }

  const f = deliveryFixture({
    types: ['Account/New'],
    settings: { max_attempts: 2, request_timeout: REQUEST_TIMEOUT_S },
    receiver: () => new HostileReceiver().listen(),
    prepare: async ({ rx }) => {
      thief = http.createServer((_req, res) => { thiefHits++; res.end('{}'); });
      await new Promise<void>((r) => thief.listen(0, '127.0.0.1', r));
      rx.redirectTarget = `http://127.0.0.1:${(thief.address() as AddressInfo).port}/stolen`;
    },
    sender: 'child',
  });
  before(async () => {
    ({ t, rx, child, ids } = f);
    // Warm up (the first request loads undici's code): the memory baseline comes after.
    await finished(await addAccount('good-warmup'), 'the warm-up event');
  });
  after(async () => {
    if (thief) { thief.closeAllConnections(); await new Promise<void>((r) => thief.close(() => r())); }
  });

  it('garbage instead of HTTP: a failed attempt with a parse error, retried, then FAILED; another account goes on', async () => {
    const bad = await addAccount('garbage-1');
    const good = await addAccount('good-1');
    const d = await finished(bad, 'garbage-1 to fail for good');
    assert.equal(d.state, 'FAILED');
    assert.equal(d.attempts, 2);
    assert.equal(d.last_http_status, null);
    assert.match(d.last_error, /HPE_|parse|Expected HTTP|invalid/i, d.last_error);
    assert.equal((await finished(good, 'good-1')).state, 'DELIVERED');
  });

  it('a 302 redirect is not followed: a failed attempt naming the redirect', async () => {
    const bad = await addAccount('redirect-1');
    const d = await finished(bad, 'redirect-1 to fail for good');
    assert.equal(d.state, 'FAILED');
    assert.equal(d.last_http_status, 302);
    assert.equal(d.last_error, `HTTP 302 (redirect to ${rx.redirectTarget} not followed): moved`);
    assert.equal(thiefHits, 0, 'the redirect target was never asked');
  });

  it('a 2xx with a 200 MB body: delivered, the rest of the body dropped, the sender\'s memory bounded', async () => {
    const pid = child.child.pid!;
    const baseline = vmRssBytes(pid);
    let peak = baseline;
    const sampler = setInterval(() => { try { peak = Math.max(peak, vmRssBytes(pid)); } catch { /* exited */ } }, 20);
    try {
      const huge = await addAccount('huge-1');
      const d = await finished(huge, 'huge-1');
      assert.equal(d.state, 'DELIVERED');
      assert.equal(d.last_http_status, 200);
      await eventually(async () => rx.hugeClosedEarly || rx.hugeBytesWritten >= HUGE, 20_000, 'the huge answer to end');
    } finally {
      clearInterval(sampler);
    }
    const grew = peak - baseline;
    assert.ok(grew < 100 * 1024 * 1024, `espf run grew by ${Math.round(grew / 1048576)} MB (baseline ${Math.round(baseline / 1048576)} MB)`);
    assert.ok(rx.hugeClosedEarly, `the sender stopped reading: ${Math.round(rx.hugeBytesWritten / 1048576)} MB of 200 written`);
  });

  it('an answer that never finishes: request_timeout honoured, retried, then FAILED; other accounts go on meanwhile', async () => {
    const hang = await addAccount('hang-1');
    const good = await addAccount('good-2');
    const g = await finished(good, 'good-2');
    assert.equal(g.state, 'DELIVERED');
    const d = await finished(hang, 'hang-1 to fail for good');
    assert.ok(g.finished_at < d.finished_at, 'the other account did not wait for the hanging one');
    assert.equal(d.state, 'FAILED');
    assert.equal(d.attempts, 2);
    assert.equal(d.last_error, `HTTP 200 but the answer did not complete: timeout: no complete answer within request_timeout (${REQUEST_TIMEOUT_S} s)`);
    const tries = rx.seen.filter((s) => s.id === 'hang-1');
    assert.equal(tries.length, 2);
    const spent = d.finished_at.getTime() - tries[0]!.at;
    assert.ok(spent >= 2 * REQUEST_TIMEOUT_S * 1000 - 200 && spent < 2 * REQUEST_TIMEOUT_S * 1000 + 3000, `two attempts of ${REQUEST_TIMEOUT_S} s took ${spent} ms`);
  });

  it('nothing is stuck: a later event is delivered; provisioning.log has every attempt with its reason', async () => {
    const last = await addAccount('good-final');
    assert.equal((await finished(last, 'good-final')).state, 'DELIVERED');
    await child.stop();
    assert.equal(child.exitCode, 0, child.output);
    const lines = readFileSync(path.join(child.logDir, 'provisioning.log'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const events = new Map((await t.db.query(sql`
      SELECT d.i_event, a.id FROM espf.event_deliveries d JOIN billing.account a USING (i_account)`)).map((r) => [Number(r.i_event), r.id as string]));
    const byId = (id: string) => lines.filter((l) => events.get(Number(l.i_event)) === id);
    const reasons = (id: string) => byId(id).map((l) => l.error);
    assert.equal(byId('garbage-1').length, 2);
    for (const r of reasons('garbage-1')) assert.match(r, /HPE_|parse|Expected HTTP|invalid/i);
    assert.deepEqual(reasons('redirect-1'), Array(2).fill(`HTTP 302 (redirect to ${rx.redirectTarget} not followed): moved`));
    assert.deepEqual(byId('huge-1').map((l) => [l.status, l.error]), [[200, null]]);
    assert.deepEqual(reasons('hang-1'), Array(2).fill(`HTTP 200 but the answer did not complete: timeout: no complete answer within request_timeout (${REQUEST_TIMEOUT_S} s)`));
    for (const l of byId('hang-1')) assert.ok(l.duration_ms >= REQUEST_TIMEOUT_S * 1000 - 50 && l.duration_ms < REQUEST_TIMEOUT_S * 1000 + 1500, `duration ${l.duration_ms}`);
    for (const id of ['good-1', 'good-2', 'good-final']) assert.deepEqual(byId(id).map((l) => l.status), [200]);
  });
});
