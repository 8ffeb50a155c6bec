import type { InstanceHandlerRow, StepRow } from '../db/config.ts';

/** The settings of an http handler (a row of espf.http_handlers). Secrets may be `env:NAME`. */
export interface HttpSettings {
  readonly url: readonly string[];
  readonly async_mode: boolean;
  readonly auth_header: string;
  readonly auth_method: 'None' | 'Basic' | 'Custom' | 'Signature' | 'StandardWebhooks';
  readonly basic_auth_user: string | null;
  readonly basic_auth_key: string | null;
  readonly custom_auth_type: string | null;
  readonly custom_auth_credentials: string | null;
  readonly signature_auth_key_id: string | null;
  /** The key of Signature, and the whsec_… secret of StandardWebhooks. */
  readonly signature_auth_key: string | null;
  readonly max_wait_time: number;     // s
  readonly request_timeout: number;   // s
  readonly token_rate: number;        // requests/s
  readonly token_burstiness: number;
  readonly max_attempts: number;
  readonly retry_delay: number;       // s
  readonly retry_max_delay: number;   // s
  readonly ca_file: string | null;
  /** The receiver's names for espf's types (espf name → its name); types not in it keep espf's name. */
  readonly event_names: Readonly<Record<string, string>>;
  /** Circuit breaker: consecutive failed attempts to one URL before it is down and only probed. */
  readonly breaker_failures: number;
  readonly probe_delay: number;       // s: from going down to the first probe
  readonly probe_max_delay: number;   // s: the longest wait between probes
}

export interface HandlerConfig {
  readonly name: string;
  readonly kind: 'http' | 'dispatcher';
  readonly enabled: boolean;
  readonly instance: string;
  readonly types: ReadonlySet<string>;
  /** Subscribed types whose espf.event_types.coalesce is on: only the newest waiting event of one is sent. */
  readonly coalesce?: ReadonlySet<string>;
  readonly http: HttpSettings | null;
  /**
   * The settings of each environment (variables.i_env) with a row of
   * espf.http_handler_envs, merged with the default row by the database
   * (sql/026_http_handler_envs.sql); an environment not in it uses `http`.
   */
  readonly envs?: ReadonlyMap<number, HttpSettings>;
  /** Request steps (espf.http_steps) of an http handler, in order; null: none, the EventSender body (docs/handlers.md). */
  readonly steps?: readonly StepRow[] | null;
}

export interface ConfigSnapshot {
  /** The version of the configuration (espf.config_version, sql/042_config_stream.sql). */
  readonly version: number;
  /** Every handler of this instance, enabled or not. */
  readonly handlers: ReadonlyMap<string, HandlerConfig>;
  /** Enabled handlers of this instance subscribed to a type. */
  handlersFor(eventType: string): readonly HandlerConfig[];
  /** The names of this instance's http handlers, enabled or not. */
  readonly httpHandlerNames: readonly string[];
}

/** The configuration of one instance, from the document of every instance (espf.config_document()) at `version`. */
export function snapshotOf(version: number, rows: readonly InstanceHandlerRow[], instance: string): ConfigSnapshot {
  const handlers = new Map<string, HandlerConfig>();
  const byType = new Map<string, HandlerConfig[]>();
  for (const r of rows) {
    if (r.instance !== instance) continue;
    const http = r.http ? normaliseHttp(r.http) : null;
    const envs = r.envs ? new Map(Object.entries(r.envs).map(([env, j]) => [Number(env), normaliseHttp(j)] as const)) : undefined;
    const h: HandlerConfig = { name: r.name, kind: r.kind, enabled: r.enabled, instance: r.instance, types: new Set(r.types), coalesce: new Set(r.coalesce), http, envs, steps: r.steps };
    handlers.set(h.name, h);
    if (!h.enabled) continue;
    for (const t of r.types) {
      let list = byType.get(t);
      if (!list) byType.set(t, list = []);
      list.push(h);
    }
  }
  const none: readonly HandlerConfig[] = [];
  const httpHandlerNames = [...handlers.values()].filter((h) => h.kind === 'http').map((h) => h.name);
  return { version, handlers, handlersFor: (t) => byType.get(t) ?? none, httpHandlerNames };
}

export function normaliseHttp(j: Record<string, unknown>): HttpSettings {
  const num = (k: string) => Number(j[k]);
  return {
    url: (j.url as string[]) ?? [],
    async_mode: Boolean(j.async_mode),
    auth_header: String(j.auth_header),
    auth_method: j.auth_method as HttpSettings['auth_method'],
    basic_auth_user: (j.basic_auth_user as string | null) ?? null,
    basic_auth_key: (j.basic_auth_key as string | null) ?? null,
    custom_auth_type: (j.custom_auth_type as string | null) ?? null,
    custom_auth_credentials: (j.custom_auth_credentials as string | null) ?? null,
    signature_auth_key_id: (j.signature_auth_key_id as string | null) ?? null,
    signature_auth_key: (j.signature_auth_key as string | null) ?? null,
    max_wait_time: num('max_wait_time'),
    request_timeout: num('request_timeout'),
    token_rate: num('token_rate'),
    token_burstiness: num('token_burstiness'),
    max_attempts: num('max_attempts'),
    retry_delay: num('retry_delay'),
    retry_max_delay: num('retry_max_delay'),
    ca_file: (j.ca_file as string | null) ?? null,
    event_names: (j.event_names as Record<string, string> | null) ?? {},
    breaker_failures: num('breaker_failures'),
    probe_delay: num('probe_delay'),
    probe_max_delay: num('probe_max_delay'),
  };
}
