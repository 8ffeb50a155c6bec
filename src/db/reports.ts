// The report views of sql/500_reports.sql and sql/450_catch_up.sql, for
// `espf status` (src/cli/status-command.ts) and espf run's instance heartbeat
// (src/run/instances.ts).
import { sql, type Queryable } from '@databases/pg';
import type { AccountStatus } from './statuses.ts';
import type { DeliveryState } from './delivery-states.ts';
import type { Database, Row } from './schema.ts';

type View<T extends keyof Database, C extends keyof Row<T>> = Pick<Row<T>, C>;

export type BacklogRow = View<'espf.report_backlog', 'handler' | 'enabled' | 'instance' | 'waiting' | 'pending' | 'retry' | 'oldest_committed_at' | 'next_attempt_at'>
  & { readonly oldest_age_s: number | null };

export function backlog(db: Queryable): Promise<BacklogRow[]> {
  return db.query(sql`
    SELECT handler, enabled, instance, waiting, pending, retry, round(extract(epoch FROM oldest_age))::bigint AS oldest_age_s,
           oldest_committed_at, next_attempt_at
      FROM espf.report_backlog ORDER BY handler`);
}

export type TargetRow = View<'espf.target_states', 'handler' | 'i_env' | 'url' | 'instance' | 'since' | 'failures' | 'probes' | 'next_probe_at' | 'last_http_status' | 'last_error' | 'updated_at'>
  & { readonly state: 'up' | 'DOWN'; readonly for_s: number };

/** The circuit breaker of each target URL (espf.target_states), the ones down first. */
export function targets(db: Queryable): Promise<TargetRow[]> {
  return db.query(sql`
    SELECT handler, i_env, url, instance, CASE WHEN up THEN 'up' ELSE 'DOWN' END AS state, since,
           round(extract(epoch FROM now() - since))::bigint AS for_s,
           failures, probes, next_probe_at, last_http_status, last_error, updated_at
      FROM espf.target_states ORDER BY up, handler, i_env NULLS FIRST, url`);
}

export function failures24h(db: Queryable): Promise<View<'espf.report_failures_24h', 'event_type' | 'handler' | 'failures' | 'accounts' | 'last_failed_at' | 'last_http_status' | 'last_error'>[]> {
  return db.query(sql`
    SELECT event_type, handler, failures, accounts, last_failed_at, last_http_status, last_error
      FROM espf.report_failures_24h ORDER BY failures DESC, event_type, handler`);
}

export type LatencyRow = {
  readonly hour: Date | null; readonly handler: string | null; readonly delivered: number | null;
  readonly p50_s: number | null; readonly p95_s: number | null; readonly p99_s: number | null; readonly max_s: number | null;
};

/** Delivery latency per hour and handler, the last `hours` hours. */
export function latencyHourly(db: Queryable, hours: number): Promise<LatencyRow[]> {
  return db.query(sql`
    SELECT hour, handler, delivered, p50_s::float8 AS p50_s, p95_s::float8 AS p95_s, p99_s::float8 AS p99_s, max_s::float8 AS max_s
      FROM espf.report_latency_hourly
     WHERE hour >= date_trunc('hour', now()) - make_interval(hours => ${hours - 1})
     ORDER BY hour DESC, handler`);
}

export type AccountStatusCounts = {
  readonly handler: string | null; readonly accounts: number; readonly ok: number; readonly in_progress: number;
  readonly retry: number; readonly failed: number; readonly last_update: Date | null;
};

/** Accounts per status and handler. */
export function accountStatusByHandler(db: Queryable): Promise<AccountStatusCounts[]> {
  const is = (s: AccountStatus) => sql`count(*) FILTER (WHERE status = ${s})`;
  return db.query(sql`
    SELECT handler, count(*) AS accounts,
           ${is('OK')} AS ok, ${is('IN_PROGRESS')} AS in_progress, ${is('RETRY')} AS retry, ${is('FAILED')} AS failed,
           max(updated_at) AS last_update
      FROM espf.report_account_status GROUP BY handler ORDER BY handler`);
}

/** The latest accounts whose status is not OK. */
export function accountsNotOk(db: Queryable, limit: number): Promise<View<'espf.report_account_status', 'i_account' | 'account_id' | 'handler' | 'status' | 'event_type' | 'attempts' | 'message' | 'updated_at'>[]> {
  return db.query(sql`
    SELECT i_account, account_id, handler, status, event_type, attempts, message, updated_at
      FROM espf.report_account_status WHERE status <> ${'OK' satisfies AccountStatus}
     ORDER BY updated_at DESC, i_account, handler LIMIT ${limit}`);
}

/** The latest backfills (target_handler: the one handler they are for; null: all). */
export function recentBackfills(db: Queryable, limit = 10): Promise<View<'espf.report_backfills', 'id' | 'rule' | 'state' | 'rows_done' | 'rows_total' | 'events' | 'last_key' | 'started_at' | 'updated_at' | 'target_handler'>[]> {
  return db.query(sql`
    SELECT id, rule, state, rows_done, rows_total, events, last_key, started_at, updated_at, target_handler
      FROM espf.report_backfills ORDER BY id DESC LIMIT ${limit}`);
}

export type SupersededRow = { readonly handler: string; readonly event_type: string; readonly superseded: number; readonly last_at: Date | null };

/** Deliveries superseded by a newer event of a coalescing type in the last 24 hours, per handler and type. */
export function superseded24h(db: Queryable): Promise<SupersededRow[]> {
  return finished24h(db, 'SUPERSEDED', 'superseded');
}

export type SkippedRow = { readonly handler: string; readonly event_type: string; readonly skipped: number; readonly last_at: Date | null };

/** Deliveries skipped in the last 24 hours (a handler with request steps has none for the type), per handler and type. */
export function skipped24h(db: Queryable): Promise<SkippedRow[]> {
  return finished24h(db, 'SKIPPED', 'skipped');
}

/** Deliveries that reached `state` in the last 24 hours, counted as `as` per handler and type. */
function finished24h<R>(db: Queryable, state: DeliveryState, as: string): Promise<R[]> {
  return db.query(sql`
    SELECT handler, event_type, count(*)::int AS ${sql.ident(as)}, max(finished_at) AS last_at
      FROM espf.event_deliveries
     WHERE state = ${state} AND finished_at > now() - interval '24 hours'
     GROUP BY handler, event_type ORDER BY handler, event_type`);
}

/** Instances split into shards: one row per shard (espf.report_shards). */
export function shards(db: Queryable): Promise<View<'espf.report_shards', 'instance' | 'shard' | 'shards' | 'slot_name' | 'streaming' | 'lag_bytes' | 'waiting_events' | 'retry' | 'last_error'>[]> {
  return db.query(sql`
    SELECT instance, shard, shards, slot_name, streaming, lag_bytes, waiting_events, retry, last_error
      FROM espf.report_shards ORDER BY instance, shard`);
}

/** A handler that waits on an instance that is not streaming (espf.report_waiting_handlers). */
export type WaitingHandler = {
  readonly handler: string;
  readonly kind: string;
  readonly instance: string;
  readonly instance_state: 'never streamed' | 'not streaming';
  readonly last_streamed_at: Date | null;
  readonly waiting_events: number;
};

/** Handlers whose events wait on an instance that is not streaming; those of `exceptInstance` left out. */
export function waitingHandlers(db: Queryable, exceptInstance?: string): Promise<WaitingHandler[]> {
  return db.query(sql`
    SELECT handler, kind, instance, instance_state, last_streamed_at, waiting_events::bigint AS waiting_events
      FROM espf.report_waiting_handlers
     WHERE ${exceptInstance === undefined ? sql`true` : sql`instance <> ${exceptInstance}`}
     ORDER BY instance, handler`);
}
