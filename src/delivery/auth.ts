import { createHmac } from 'node:crypto';
import type { HttpSettings } from '../config/snapshot.ts';
import { resolveSecret } from '../security/secret-ref.ts';
import { secretBody, webhookId, webhookKey, webhookSignature, type MessageRef } from './standard-webhooks.ts';

/** One header of a request: [lower-case name, value]. */
export type AuthHeader = readonly [name: string, value: string];

const NO_HEADERS: readonly AuthHeader[] = [];

/**
 * The auth headers of one request (docs/handlers.md; examples/receiver/README.md):
 * none for None, the `auth_header` for Basic, Custom and Signature, and
 * webhook-id, webhook-timestamp and webhook-signature for StandardWebhooks,
 * signed over the id of `message` and `body` as they are sent. Only
 * StandardWebhooks reads `message` (src/delivery/standard-webhooks.ts).
 */
export function authHeaders(h: HttpSettings, date: string, message: MessageRef, body: string): readonly AuthHeader[] {
  switch (h.auth_method) {
    case 'None':
      return NO_HEADERS;
    case 'Basic': {
      const user = resolveSecret(h.basic_auth_user, 'basic_auth_user');
      const key = resolveSecret(h.basic_auth_key, 'basic_auth_key');
      return [[h.auth_header.toLowerCase(), `Basic ${Buffer.from(`${user}:${key}`).toString('base64')}`]];
    }
    case 'Custom':
      return [[h.auth_header.toLowerCase(), `${resolveSecret(h.custom_auth_type, 'custom_auth_type')} ${resolveSecret(h.custom_auth_credentials, 'custom_auth_credentials')}`]];
    case 'Signature': {
      const keyId = resolveSecret(h.signature_auth_key_id, 'signature_auth_key_id');
      const key = resolveSecret(h.signature_auth_key, 'signature_auth_key');
      const signature = createHmac('sha1', key).update(`date: ${date}`).digest('base64');
      return [[h.auth_header.toLowerCase(), `Signature keyId="${keyId}",algorithm="hmac-sha1",headers="date",signature="${signature}"`]];
    }
    case 'StandardWebhooks': {
      const key = webhookKey(resolveSecret(h.signature_auth_key, 'signature_auth_key'), 'signature_auth_key');
      const id = webhookId(message.handler, message.event.i_event);
      const timestamp = String(Math.floor(Date.now() / 1000));
      return [['webhook-id', id], ['webhook-timestamp', timestamp], ['webhook-signature', webhookSignature(key, id, timestamp, body)]];
    }
  }
}

/**
 * What must never be logged for these settings: the secret values (resolved;
 * a missing variable is skipped) and the credentials of the auth header. The
 * headers of StandardWebhooks carry no secret (an id, a time, a signature that
 * holds for one request): only its key is hidden, whole and without whsec_.
 */
export function secretsIn(h: HttpSettings, headers: readonly AuthHeader[]): string[] {
  const out: string[] = [];
  for (const [v, what] of [[h.basic_auth_key, 'basic_auth_key'], [h.custom_auth_credentials, 'custom_auth_credentials'], [h.signature_auth_key, 'signature_auth_key']] as const) {
    try {
      const s = resolveSecret(v, what);
      if (s.length >= 4) out.push(s);
    } catch { /* not set: nothing to hide */ }
  }
  if (h.auth_method === 'StandardWebhooks') {
    try {
      const body = secretBody(resolveSecret(h.signature_auth_key, 'signature_auth_key'));
      if (body.length >= 4) out.push(body);
    } catch { /* not set: nothing to hide */ }
  } else {
    for (let i = 0; i < headers.length; i++) {
      const value = headers[i]![1];
      out.push(value);
      const credentials = value.slice(value.indexOf(' ') + 1);
      if (credentials.length >= 4) out.push(credentials);
    }
  }
  return out.sort((a, b) => b.length - a.length);
}
