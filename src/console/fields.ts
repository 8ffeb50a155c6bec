import { hasMaskedPassword, MASK, redactUrl } from '../security/redact.ts';
/**
 * The columns of espf.http_handlers as the console's handler form shows them,
 * each with its explanation (the same as the README's table of options).
 */
export type FieldKind = 'urls' | 'bool' | 'text' | 'secret' | 'int' | 'number' | 'choice' | 'json';

export interface Field {
  readonly column: string;
  readonly label: string;
  readonly seed: string | null;     // the seed's option name
  readonly kind: FieldKind;
  readonly choices?: readonly string[];
  readonly nullable?: boolean;
  readonly help: string;
}

export const HTTP_FIELDS: readonly Field[] = [
  { column: 'url', label: 'URLs', seed: 'URL', kind: 'urls', help: 'The http:// or https:// URLs to POST each event to, one per line, in this order. An event is delivered once every URL has answered 2xx; a URL that already answered is not asked again when the event is retried.' },
  { column: 'async_mode', label: 'Async mode', seed: 'AsyncMode', kind: 'bool', help: 'true: requests go out concurrently as soon as they are ready (events of one account still go one at a time), limited by the token bucket. false: one request at a time; the next goes when the reply to the previous one is in.' },
  { column: 'auth_header', label: 'Auth header', seed: 'AuthHeader', kind: 'text', help: 'The name of the header that carries the credentials of the auth method.' },
  { column: 'auth_method', label: 'Auth method', seed: 'AuthMethod', kind: 'choice', choices: ['None', 'Basic', 'Custom', 'Signature', 'StandardWebhooks'], help: 'None; Basic (user and key); Custom (a type and credentials); Signature (a key and a key ID, HMAC-SHA1 of the Date header); StandardWebhooks (a whsec_ secret in the signature key: webhook-id, webhook-timestamp and webhook-signature headers, HMAC-SHA256 of the id, time and body; the auth header is not used).' },
  { column: 'basic_auth_user', label: 'Basic auth user', seed: 'BasicAuth_User', kind: 'text', nullable: true, help: 'Basic only: the user of "Basic base64(user:key)". Cannot contain ":". env:NAME reads it from the environment of espf run.' },
  { column: 'basic_auth_key', label: 'Basic auth key', seed: 'BasicAuth_Key', kind: 'secret', nullable: true, help: 'Basic only: the password. Never shown; type a new one to replace it, or env:NAME.' },
  { column: 'custom_auth_type', label: 'Custom auth type', seed: 'CustomAuth_Type', kind: 'text', nullable: true, help: 'Custom only: the header is "<type> <credentials>", for example "Bearer 3f9a…".' },
  { column: 'custom_auth_credentials', label: 'Custom auth credentials', seed: 'CustomAuth_Credentials', kind: 'secret', nullable: true, help: 'Custom only: the credentials. Never shown; type new ones to replace them, or env:NAME.' },
  { column: 'signature_auth_key_id', label: 'Signature key ID', seed: 'SignatureAuth.KeyId', kind: 'text', nullable: true, help: 'Signature only: the string the receiver uses to look up the key that checks the signature.' },
  { column: 'signature_auth_key', label: 'Signature key', seed: 'SignatureAuth.Key', kind: 'secret', nullable: true, help: 'Signature: the key that signs (HMAC-SHA1 of "date: <Date header>"). StandardWebhooks: the secret, whsec_ and the base64 of 24 to 64 random bytes. Never shown; type a new one to replace it, or env:NAME.' },
  { column: 'max_wait_time', label: 'Max wait time (s)', seed: 'MaxWaitTime', kind: 'int', help: 'How long the handler waits for replies still outstanding: in async mode no reply is awaited longer than this (or than the request timeout, whichever is smaller). A graceful stop does not wait for it (ESPF_STOP_TIMEOUT bounds the stop).' },
  { column: 'request_timeout', label: 'Request timeout (s)', seed: 'RequestTimeout', kind: 'int', help: 'How long to wait for the reply to one request. After that the attempt has failed (a timeout) and is retried.' },
  { column: 'token_rate', label: 'Token rate (/s)', seed: 'TokenRate', kind: 'number', help: 'Async mode: the average number of requests per second.' },
  { column: 'token_burstiness', label: 'Token burstiness', seed: 'TokenBurstiness', kind: 'int', help: 'Async mode: the most requests sent in any one second. The bucket holds token_burstiness − token_rate tokens (at least 1), refills at token_rate and starts empty.' },
  { column: 'max_attempts', label: 'Max attempts', seed: null, kind: 'int', help: 'Attempts per event before it is FAILED for good. The account\'s later events then go on.' },
  { column: 'retry_delay', label: 'Retry delay (s)', seed: null, kind: 'number', help: 'The wait before the first retry.' },
  { column: 'retry_max_delay', label: 'Retry max delay (s)', seed: null, kind: 'number', help: 'The longest wait between retries: waits grow exponentially from the retry delay up to this, with jitter. A Retry-After on a 429 or 503 is honoured.' },
  { column: 'event_names', label: 'Event names', seed: null, kind: 'json', help: 'The names this handler\'s receiver knows event types by, as a JSON object from espf\'s name to the receiver\'s, e.g. {"Account/ID/Changed": "Account/Id/Changed"}. Only the body\'s event_type carries the mapped name; types not in the map go out under espf\'s name. {} for none.' },
  { column: 'breaker_failures', label: 'Breaker failures', seed: null, kind: 'int', help: 'Consecutive failed attempts (connection error, timeout, 5xx, 408, 429) to one URL before it is considered down: its deliveries are then not retried one by one, a single probe request goes instead.' },
  { column: 'probe_delay', label: 'Probe delay (s)', seed: null, kind: 'number', help: 'Seconds from a URL going down to the first probe request; later probes wait twice as long each time.' },
  { column: 'probe_max_delay', label: 'Probe max delay (s)', seed: null, kind: 'number', help: 'The longest wait, in seconds, between two probe requests to a URL that is down.' },
  { column: 'ca_file', label: 'CA file', seed: null, kind: 'text', nullable: true, help: 'The path, on the host of espf run, of a PEM bundle of the CAs that sign your https:// receivers\' certificates (a private CA). Empty: the system\'s CAs.' },
];

export class FieldError extends Error {
  constructor(readonly column: string, message: string) { super(message); }
}

/**
 * The form shows each URL with its password as *** (src/security/redact.ts): a line
 * that is still the shown form of a stored URL is that stored URL again, and a
 * line whose password is *** but matches no stored URL is refused (the password
 * was not typed).
 */
function restoreMaskedUrls(column: string, lines: string[], stored: unknown): string[] {
  const shown = new Map((Array.isArray(stored) ? stored : []).filter((u): u is string => typeof u === 'string').map((u) => [redactUrl(u), u]));
  return lines.map((line) => {
    const was = shown.get(line);
    if (was !== undefined) return was;
    if (hasMaskedPassword(line)) {
      throw new FieldError(column, `espf.http_handlers.${column}: ${line.slice(0, 80)} has its password shown as ${MASK}: type the password again, or remove it`);
    }
    return line;
  });
}

/**
 * The values of a submitted form for the columns that changed, in the types of
 * the columns (of `fields`, default every field; `inherit`: the form of an
 * environment, where an empty field is null, inherited from the default row). A secret left empty keeps its value; "clear_<column>" sets null.
 * Only the syntax is checked here (a number must be a number); every rule is the
 * database's.
 */
export function formValues(form: URLSearchParams, current: Record<string, unknown>, opts: { fields?: readonly Field[]; inherit?: boolean } = {}): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of opts.fields ?? HTTP_FIELDS) {
    if (f.kind === 'secret') {
      if (form.get(`clear_${f.column}`) === 'on') out[f.column] = null;
      else if ((form.get(f.column) ?? '') !== '') out[f.column] = form.get(f.column);
      continue;
    }
    const v = form.get(f.column);
    if (v === null) continue;
    let value: unknown;
    // An environment's row (espf.http_handler_envs): an empty field inherits the default row.
    if (opts.inherit && v.trim() === '') value = null;
    else switch (f.kind) {
      case 'urls': value = restoreMaskedUrls(f.column, v.split(/\r?\n/).map((s) => s.trim()).filter(Boolean), current[f.column]); break;
      case 'bool': value = v === 'true'; break;
      case 'json':
        try { value = JSON.parse(v.trim() === '' ? '{}' : v); } catch (err) {
          throw new FieldError(f.column, `espf.http_handlers.${f.column}: not JSON (${err instanceof Error ? err.message : String(err)})`);
        }
        break;
      case 'int':
        if (!/^\s*-?\d{1,10}\s*$/.test(v)) throw new FieldError(f.column, `espf.http_handlers.${f.column}: ${JSON.stringify(v.slice(0, 40))} is not a whole number`);
        value = Number(v); break;
      case 'number':
        if (!/^\s*-?(\d+(\.\d*)?|\.\d+)\s*$/.test(v)) throw new FieldError(f.column, `espf.http_handlers.${f.column}: ${JSON.stringify(v.slice(0, 40))} is not a number`);
        value = v.trim(); break;
      default: value = v === '' && f.nullable ? null : v;
    }
    const was = current[f.column];
    const same = typeof value === 'object' && value !== null ? JSON.stringify(value) === JSON.stringify(was)
      : String(value ?? '') === String(was ?? '') && (value === null) === (was === null);
    if (!same) out[f.column] = value;
  }
  return out;
}
