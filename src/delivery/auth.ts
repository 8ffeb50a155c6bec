import { createHmac } from 'node:crypto';
import type { HttpSettings } from '../config/snapshot.ts';
import { resolveSecret } from '../security/secret-ref.ts';

/** The auth header of one request (README, "Writing a receiver"; examples/receiver/README.md), or undefined for None. */
export function authHeaderValue(h: HttpSettings, date: string): string | undefined {
  switch (h.auth_method) {
    case 'None':
      return undefined;
    case 'Basic': {
      const user = resolveSecret(h.basic_auth_user, 'basic_auth_user');
      const key = resolveSecret(h.basic_auth_key, 'basic_auth_key');
      return `Basic ${Buffer.from(`${user}:${key}`).toString('base64')}`;
    }
    case 'Custom':
      return `${resolveSecret(h.custom_auth_type, 'custom_auth_type')} ${resolveSecret(h.custom_auth_credentials, 'custom_auth_credentials')}`;
    case 'Signature': {
      const keyId = resolveSecret(h.signature_auth_key_id, 'signature_auth_key_id');
      const key = resolveSecret(h.signature_auth_key, 'signature_auth_key');
      const signature = createHmac('sha1', key).update(`date: ${date}`).digest('base64');
      return `Signature keyId="${keyId}",algorithm="hmac-sha1",headers="date",signature="${signature}"`;
    }
  }
}

/**
 * What must never be logged for these settings: the secret values (resolved;
 * a missing variable is skipped) and the credentials of the auth header.
 */
export function secretsIn(h: HttpSettings, header: string | undefined): string[] {
  const out: string[] = [];
  for (const [v, what] of [[h.basic_auth_key, 'basic_auth_key'], [h.custom_auth_credentials, 'custom_auth_credentials'], [h.signature_auth_key, 'signature_auth_key']] as const) {
    try {
      const s = resolveSecret(v, what);
      if (s.length >= 4) out.push(s);
    } catch { /* not set: nothing to hide */ }
  }
  if (header) {
    out.push(header);
    const credentials = header.slice(header.indexOf(' ') + 1);
    if (credentials.length >= 4) out.push(credentials);
  }
  return out.sort((a, b) => b.length - a.length);
}
