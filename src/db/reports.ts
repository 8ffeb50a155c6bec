// The report views of sql/500_reports.sql (espf status, the status API),
// built with Kysely (src/db/query.ts).
import type { Queryable } from '@databases/pg';
import { sql } from 'kysely';
import { q, run } from './query.ts';

export function backlog(db: Queryable) {
  return run(db, q.selectFrom('espf.report_backlog')
    .select(['handler', 'enabled', 'instance', 'waiting', 'pending', 'retry'])
    .select(sql<number>`round(extract(epoch FROM oldest_age))::bigint`.as('oldest_age_s'))
    .select(['oldest_committed_at', 'next_attempt_at'])
    .orderBy('handler'));
}

/** The circuit breaker of each target URL (espf.target_states), the ones down first. */
export function targets(db: Queryable) {
  return run(db, q.selectFrom('espf.target_states')
    .select(['handler', 'url', 'instance'])
    .select(sql<string>`CASE WHEN up THEN 'up' ELSE 'DOWN' END`.as('state'))
    .select('since')
    .select(sql<number>`round(extract(epoch FROM now() - since))::bigint`.as('for_s'))
    .select(['failures', 'probes', 'next_probe_at', 'last_http_status', 'last_error', 'updated_at'])
    .orderBy('up').orderBy('handler').orderBy('url'));
}

export function failures24h(db: Queryable) {
  return run(db, q.selectFrom('espf.report_failures_24h')
    .select(['event_type', 'handler', 'failures', 'accounts', 'last_failed_at', 'last_http_status', 'last_error'])
    .orderBy('failures', 'desc').orderBy('event_type').orderBy('handler'));
}

/** Delivery latency per hour and handler, the last `hours` hours. */
export function latencyHourly(db: Queryable, hours: number) {
  const f8 = (c: 'p50_s' | 'p95_s' | 'p99_s' | 'max_s') => sql<number | null>`${sql.ref(c)}::float8`.as(c);
  return run(db, q.selectFrom('espf.report_latency_hourly')
    .select(['hour', 'handler', 'delivered', f8('p50_s'), f8('p95_s'), f8('p99_s'), f8('max_s')])
    .where('hour', '>=', sql<Date>`date_trunc('hour', now()) - make_interval(hours => ${hours - 1})`)
    .orderBy('hour', 'desc').orderBy('handler'));
}

/** Accounts per status and handler. */
export function accountStatusByHandler(db: Queryable) {
  return run(db, q.selectFrom('espf.report_account_status')
    .select((eb) => [
      'handler',
      eb.fn.countAll<number>().as('accounts'),
      eb.fn.countAll<number>().filterWhere('status', '=', 'OK').as('ok'),
      eb.fn.countAll<number>().filterWhere('status', '=', 'IN_PROGRESS').as('in_progress'),
      eb.fn.countAll<number>().filterWhere('status', '=', 'RETRY').as('retry'),
      eb.fn.countAll<number>().filterWhere('status', '=', 'FAILED').as('failed'),
      eb.fn.max('updated_at').as('last_update'),
    ])
    .groupBy('handler').orderBy('handler'));
}

/** The latest accounts whose status is not OK. */
export function accountsNotOk(db: Queryable, limit: number) {
  return run(db, q.selectFrom('espf.report_account_status')
    .select(['i_account', 'account_id', 'handler', 'status', 'event_type', 'attempts', 'message', 'updated_at'])
    .where('status', '<>', 'OK')
    .orderBy('updated_at', 'desc').orderBy('i_account').orderBy('handler').limit(limit));
}

/** The latest backfills. */
export function recentBackfills(db: Queryable, limit = 10) {
  return run(db, q.selectFrom('espf.report_backfills')
    .select(['id', 'rule', 'state', 'rows_done', 'rows_total', 'events', 'last_key', 'started_at', 'updated_at'])
    .orderBy('id', 'desc').limit(limit));
}

/** Deliveries superseded by a newer event of a coalescing type in the last 24 hours, per handler and type. */
export function superseded24h(db: Queryable) {
  return run(db, q.selectFrom('espf.event_deliveries')
    .select((eb) => ['handler', 'event_type', sql<number>`count(*)::int`.as('superseded'), eb.fn.max('finished_at').as('last_at')])
    .where('state', '=', 'SUPERSEDED')
    .where('finished_at', '>', sql<Date>`now() - interval '24 hours'`)
    .groupBy(['handler', 'event_type']).orderBy('handler').orderBy('event_type'));
}

/** Instances split into shards: one row per shard (espf.report_shards). */
export function shards(db: Queryable) {
  return run(db, q.selectFrom('espf.report_shards')
    .select(['instance', 'shard', 'shards', 'slot_name', 'streaming', 'lag_bytes', 'waiting_events', 'retry', 'last_error'])
    .orderBy('instance').orderBy('shard'));
}

/** Handlers whose events wait on an instance (espf.report_waiting_handlers). */
export function waitingHandlers(db: Queryable) {
  return run(db, q.selectFrom('espf.report_waiting_handlers')
    .select(['handler', 'kind', 'instance', 'instance_state', 'last_streamed_at'])
    .select(sql<number>`waiting_events::bigint`.as('waiting_events'))
    .orderBy('instance').orderBy('handler'));
}
