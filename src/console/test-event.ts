import { randomUUID } from 'node:crypto';
import { normaliseHttp } from '../config/snapshot.ts';
import { HttpClient } from '../delivery/http-client.ts';

export interface TestAnswer { readonly url: string; readonly ok: boolean; readonly answer: string; readonly durationMs: number }

/**
 * "Send a test event": one POST of {"event_type": "espf/Test", …} to each URL of
 * an espf.http_handlers row, with its auth, timeouts and CA file, as the sender
 * would send it. Secrets echoed back by a receiver are hidden by the HTTP client.
 */
export async function sendTestEvent(row: Record<string, unknown>): Promise<TestAnswer[]> {
  const settings = normaliseHttp(row);
  const now = new Date();
  const body = JSON.stringify({
    event_type: 'espf/Test',
    variables: { i_event: 0, i_env: 1, event_time: now.toISOString().slice(0, 19).replace('T', ' '), test: true },
  });
  // A webhook-id of its own per test, <handler>:test-<uuid> (a receiver that keeps ids would drop a second test under one id).
  const message = { handler: String(row.handler), event: { i_event: `test-${randomUUID()}` } };
  const client = new HttpClient(settings.ca_file);
  try {
    const out: TestAnswer[] = [];
    // A test waits at most 10 s per URL, whatever request_timeout says.
    const quick = { ...settings, request_timeout: Math.min(settings.request_timeout, 10), max_wait_time: Math.min(settings.max_wait_time, 10) };
    for (const url of settings.url) {
      const r = await client.post(url, body, quick, message);
      out.push({ url, ok: r.ok, answer: r.ok ? `HTTP ${r.status}` : r.reason, durationMs: r.durationMs });
    }
    return out;
  } finally {
    await client.close();
  }
}
