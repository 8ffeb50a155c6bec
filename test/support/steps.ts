import { sql } from '@databases/pg';
import type { Db } from '../../src/db/connect.ts';
import type { Received, Responder } from './receiver.ts';

/** An http handler of its own (enabled, subscribed, types enabled) with short retries. */
export async function addHttpHandler(db: Db, name: string, url: string, types: string[], settings: Record<string, string | number | boolean> = {}): Promise<void> {
  await db.tx(async (tx) => {
    await tx.query(sql`INSERT INTO espf.handlers (name, kind) VALUES (${name}, 'http')`);
    await tx.query(sql`INSERT INTO espf.http_handlers (handler, url, retry_delay, retry_max_delay, token_rate, token_burstiness)
                       VALUES (${name}, ${[url]}::text[], 0.05, 0.2, 1000000, 1000000)`);
    for (const [k, v] of Object.entries(settings)) {
      await tx.query(sql`UPDATE espf.http_handlers SET ${sql.ident(k)} = ${v} WHERE handler = ${name}`);
    }
    await tx.query(sql`UPDATE espf.handlers SET enabled = true WHERE name = ${name}`);
    await tx.query(sql`INSERT INTO espf.subscriptions SELECT ${name}, t FROM unnest(${types}::text[]) t ON CONFLICT DO NOTHING`);
    await tx.query(sql`UPDATE espf.event_types SET enabled = true WHERE name = ANY(${types}::text[])`);
  });
}

/** The columns of a row of espf.http_steps besides handler, event_type and step. */
export interface StepFields {
  name?: string; method?: string; path?: string; headers?: Record<string, string>; body?: string | null;
  content_type?: string; success_when?: string; refuse_when?: string; exists_when?: string;
}

/** Inserts the steps of (handler, type), numbered 1, 2, …. */
export async function setSteps(db: Db, handler: string, type: string, steps: readonly StepFields[]): Promise<void> {
  await db.tx(async (tx) => {
    await tx.query(sql`DELETE FROM espf.http_steps WHERE handler = ${handler} AND event_type = ${type}`);
    for (const [i, s] of steps.entries()) {
      await tx.query(sql`INSERT INTO espf.http_steps (handler, event_type, step, name, method, path, headers, body, content_type, success_when, refuse_when, exists_when)
        VALUES (${handler}, ${type}, ${i + 1}, ${s.name ?? null}, ${s.method ?? 'POST'}, ${s.path ?? ''}, ${JSON.stringify(s.headers ?? {})}::jsonb,
                ${s.body ?? null}, ${s.content_type ?? 'application/json'}, ${s.success_when ?? null}, ${s.refuse_when ?? null}, ${s.exists_when ?? null})`);
    }
  });
}

/**
 * A fake HSS (the shape of a real one's REST API): PUT /auc/ answers the row
 * with its server-assigned auc_id; PUT /subscriber/ needs an auc_id it gave;
 * GET /subscriber/imsi/{imsi} (or msisdn/{msisdn}) answers the subscriber or `null`; PATCH
 * /subscriber/{id} changes it. `fail` may answer a request first.
 */
export class FakeHss {
  private nextAuc = 100;
  private nextSub = 500;
  readonly aucs = new Map<number, Record<string, unknown>>();
  readonly subscribers = new Map<number, Record<string, unknown>>();
  fail: (r: Received) => ReturnType<Responder> | null = () => null;

  readonly respond: Responder = (r) => {
    const failed = this.fail(r);
    if (failed) return failed;
    const body = r.body ? JSON.parse(r.body) as Record<string, unknown> : null;
    if (r.method === 'PUT' && r.path === '/auc/') {
      const auc_id = this.nextAuc++;
      const row = { ...body, auc_id };
      this.aucs.set(auc_id, row);
      return { status: 200, body: JSON.stringify(row) };
    }
    if (r.method === 'PUT' && r.path === '/subscriber/') {
      if (!body || !this.aucs.has(Number(body.auc_id))) return { status: 400, body: '{"result":"Failed"}' };
      if ([...this.subscribers.values()].some((s) => s.imsi === body.imsi)) return { status: 400, body: '{"result":"Failed"}' };
      const subscriber_id = this.nextSub++;
      this.subscribers.set(subscriber_id, { ...body, subscriber_id, enabled: true });
      return { status: 200, body: JSON.stringify({ ...body, subscriber_id }) };
    }
    const byKey = /^\/subscriber\/(imsi|msisdn)\/([^/]+)$/.exec(r.path);
    if (r.method === 'GET' && byKey) {
      const s = [...this.subscribers.values()].find((x) => x[byKey[1]!] === decodeURIComponent(byKey[2]!));
      return { status: 200, body: JSON.stringify(s ?? null) };
    }
    const byId = /^\/subscriber\/(\d+)$/.exec(r.path);
    if (r.method === 'PATCH' && byId) {
      const s = this.subscribers.get(Number(byId[1]));
      if (!s) return { status: 200, body: 'null' };
      Object.assign(s, body);
      return { status: 200, body: JSON.stringify(s) };
    }
    return { status: 404, body: '{"result":"Not found"}' };
  };
}

/** The HSS steps of a new account: the auc row, then the subscriber with the auc_id from step 1 (docs/handlers.md). */
export const CREATE_STEPS: StepFields[] = [
  { name: 'auc', method: 'PUT', path: '/auc/', body: '{"imsi": variables.id, "ki": "000102030405060708090a0b0c0d0e0f", "opc": "0f0e0d0c0b0a09080706050403020100", "amf": "8000"}' },
  { name: 'sub', method: 'PUT', path: '/subscriber/', body: '{"imsi": variables.id, "msisdn": "49" & variables.i_account, "auc_id": step.auc.body.auc_id}',
    success_when: 'status = 200 and body != null' },
];

/** The HSS steps of a block: look the subscriber up by MSISDN, then PATCH it by the id the lookup gave. */
export const BLOCK_STEPS: StepFields[] = [
  { name: 'lookup', method: 'GET', path: '/subscriber/msisdn/{"49" & variables.i_account}', success_when: 'status = 200 and body != null' },
  { name: 'patch', method: 'PATCH', path: '/subscriber/{step.lookup.body.subscriber_id}', body: '{"enabled": false}' },
];
