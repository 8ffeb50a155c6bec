import { createHmac } from 'node:crypto';

/**
 * auth_method = 'StandardWebhooks' (docs/handlers.md, "Standard Webhooks"):
 * the three headers of the Standard Webhooks specification, signed with
 * HMAC-SHA256 under the base64-decoded part of a `whsec_…` secret
 * (espf.http_handlers.signature_auth_key).
 */

/** A secret as the specification writes it: whsec_ and the standard base64 (padded) of its bytes. */
const SECRET = /^whsec_((?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?)$/;

/** The specification's bounds on a symmetric key: at least 24 bytes, at most 64. */
export const MIN_KEY_BYTES = 24;
export const MAX_KEY_BYTES = 64;

export class WebhookSecretError extends Error {
  readonly code = 'ESPF_SECRET_INVALID' as const;
}

/** Decoded keys by secret: a sender signs with the same few secrets for every request. */
const keys = new Map<string, Buffer>();
const KEYS_KEPT = 64;

/**
 * The HMAC key of a `whsec_<base64>` secret. `what` names the setting in the
 * error, which never quotes the value. The database refuses a literal secret of
 * another form (espf.webhook_secret_problem, sql/020_config_checks.sql); a
 * value read from the environment (env:NAME) is checked here.
 */
export function webhookKey(secret: string, what: string): Buffer {
  let key = keys.get(secret);
  if (key === undefined) {
    const m = SECRET.exec(secret);
    const bytes = m ? Buffer.from(m[1]!, 'base64') : null;
    if (bytes === null || bytes.length < MIN_KEY_BYTES || bytes.length > MAX_KEY_BYTES) {
      throw new WebhookSecretError(`${what} is not a Standard Webhooks secret: it must be whsec_ followed by the base64 of ${MIN_KEY_BYTES} to ${MAX_KEY_BYTES} random bytes`);
    }
    if (keys.size >= KEYS_KEPT) keys.clear();
    keys.set(secret, key = bytes);
  }
  return key;
}

/** The base64 part of a secret (what a receiver might echo back besides the whole secret). */
export function secretBody(secret: string): string {
  return secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret;
}

/** What a webhook-id is made of: the handler and the event (an `Item`, src/delivery/item.ts, is one). */
export interface MessageRef {
  readonly handler: string;
  readonly event: { readonly i_event: number | string };
}

/** The webhook-id prefix of each handler: its name with "." written %2E (an id never holds a "."). */
const prefixes = new Map<string, string>();

/**
 * The webhook-id of an event for a handler: `<handler>:<i_event>`, the same
 * for every attempt and every resend of that delivery (the receiver's
 * idempotency key), unique within one espf database. The specification signs
 * `<id>.<timestamp>.<body>` and asks that an id hold no ".": a "." in the
 * handler's name is written %2E (handler names never hold "%" or ":").
 */
export function webhookId(handler: string, iEvent: number | string): string {
  let prefix = prefixes.get(handler);
  if (prefix === undefined) {
    if (prefixes.size >= 1024) prefixes.clear();
    prefixes.set(handler, prefix = `${handler.replaceAll('.', '%2E')}:`);
  }
  return prefix + String(iEvent);
}

/** `v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, over the UTF-8 bytes the request sends. */
export function webhookSignature(key: Buffer, id: string, timestamp: string, body: string): string {
  return `v1,${createHmac('sha256', key).update(id).update('.').update(timestamp).update('.').update(body).digest('base64')}`;
}
