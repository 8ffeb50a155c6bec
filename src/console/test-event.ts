import { randomUUID } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { normaliseHttp } from '../config/snapshot.ts';
import { HttpClient } from '../delivery/http-client.ts';
import { deniedError, INTERNAL, type AddressPolicy } from '../security/address-policy.ts';

export interface TestAnswer { readonly url: string; readonly ok: boolean; readonly answer: string; readonly durationMs: number }

/**
 * "Send a test event": one POST of {"event_type": "espf/Test", …} to each URL of
 * an espf.http_handlers row, with its auth, timeouts and CA file, as the sender
 * would send it. Secrets echoed back by a receiver are hidden by the HTTP client.
 *
 * `deny` (ESPF_CONSOLE_TEST_EVENT_DENY, opt-in): addresses no test event goes
 * to, checked on the address each host resolves to when the socket connects.
 * An answer from a loopback, private or link-local address shows its status
 * only (`HTTP 500`), never its text: the console does not read internal
 * services for whoever may press the button.
 */
export async function sendTestEvent(row: Record<string, unknown>, deny: AddressPolicy | null = null): Promise<TestAnswer[]> {
  const settings = normaliseHttp(row);
  const now = new Date();
  const body = JSON.stringify({
    event_type: 'espf/Test',
    variables: { i_event: 0, i_env: 1, event_time: now.toISOString().slice(0, 19).replace('T', ' '), test: true },
  });
  // A webhook-id of its own per test, <handler>:test-<uuid> (a receiver that keeps ids would drop a second test under one id).
  const message = { handler: String(row.handler), event: { i_event: `test-${randomUUID()}` } };
  const client = new HttpClient(settings.ca_file, deny ? { lookup: deny.lookup() } : undefined);
  try {
    const out: TestAnswer[] = [];
    // A test waits at most 10 s per URL, whatever request_timeout says.
    const quick = { ...settings, request_timeout: Math.min(settings.request_timeout, 10), max_wait_time: Math.min(settings.max_wait_time, 10) };
    for (const url of settings.url) {
      const host = hostOf(url);
      // An address in the URL itself is never looked up: checked here.
      if (deny && host && isIP(host) && deny.denies(host)) {
        out.push({ url, ok: false, answer: `${deniedError(host, host).message}`, durationMs: 0 });
        continue;
      }
      const r = await client.post(url, body, quick, message);
      const statusOnly = r.status !== null && host !== null && await isInternal(host);
      out.push({ url, ok: r.ok, answer: r.ok || statusOnly ? `HTTP ${r.status}` : r.reason, durationMs: r.durationMs });
    }
    return out;
  } finally {
    await client.close();
  }
}

/** The host of a URL without IPv6 brackets, or null. */
function hostOf(url: string): string | null {
  try {
    const h = new URL(url).hostname;
    return h.startsWith('[') ? h.slice(1, -1) : h;
  } catch {
    return null;
  }
}

async function isInternal(host: string): Promise<boolean> {
  if (isIP(host)) return INTERNAL.denies(host);
  try {
    return (await lookup(host, { all: true })).some((a) => INTERNAL.denies(a.address));
  } catch {
    return true;
  }
}
