-- Reports for DBAs and for `espf status` (docs/operations.md). Plain views over
-- the result tables: SELECT from them, filter them, join them with billing tables.

-- The current provisioning status of every account, per handler (or per service
-- group reported through the status API). One row per (i_account, handler).
CREATE OR REPLACE VIEW espf.report_account_status AS
SELECT s.i_account,
       a.id          AS account_id,
       s.handler,
       s.status,
       s.i_event,
       s.event_type,
       s.attempts,
       s.message,
       s.updated_at,
       now() - s.updated_at AS age
  FROM espf.account_provisioning_statuses s
  LEFT JOIN billing.account a ON a.i_account = s.i_account;

-- Deliveries that failed for good (state FAILED) in the last 24 hours, by event
-- type and handler, with the latest error seen.
CREATE OR REPLACE VIEW espf.report_failures_24h AS
SELECT d.event_type,
       d.handler,
       count(*)                          AS failures,
       count(DISTINCT d.i_account)       AS accounts,
       min(d.finished_at)                AS first_failed_at,
       max(d.finished_at)                AS last_failed_at,
       (array_agg(d.last_error ORDER BY d.finished_at DESC, d.i_event DESC))[1]       AS last_error,
       (array_agg(d.last_http_status ORDER BY d.finished_at DESC, d.i_event DESC))[1] AS last_http_status
  FROM espf.event_deliveries d
 WHERE d.state = 'FAILED'
   AND d.finished_at >= now() - interval '24 hours'
 GROUP BY d.event_type, d.handler;

-- Delivery latency (commit of the source transaction -> the last URL's 2xx) of
-- delivered events, per handler and hour of delivery. Seconds.
-- Filter on `hour` (e.g. WHERE hour >= now() - interval '24 hours'): the filter
-- is applied before the percentiles are computed.
CREATE OR REPLACE VIEW espf.report_latency_hourly AS
SELECT date_trunc('hour', d.finished_at) AS hour,
       d.handler,
       count(*) AS delivered,
       percentile_cont(0.50) WITHIN GROUP (ORDER BY extract(epoch FROM d.finished_at - d.committed_at))::numeric(12,3) AS p50_s,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM d.finished_at - d.committed_at))::numeric(12,3) AS p95_s,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM d.finished_at - d.committed_at))::numeric(12,3) AS p99_s,
       max(extract(epoch FROM d.finished_at - d.committed_at))::numeric(12,3) AS max_s
  FROM espf.event_deliveries d
 WHERE d.state = 'DELIVERED'
   AND d.finished_at IS NOT NULL
   AND d.committed_at IS NOT NULL
 GROUP BY 1, 2;

-- What waits per http handler, as recorded in espf.event_deliveries: PENDING
-- (behind an earlier event of the same account, or the handler is disabled) and
-- RETRY (an attempt failed), and the age of the oldest waiting event (since its
-- commit). Every http handler has a row, with zeros when nothing waits.
-- Events still in memory before their first attempt are not recorded yet: the
-- live figure is the metric espf_queue_depth.
CREATE OR REPLACE VIEW espf.report_backlog AS
SELECT h.name AS handler,
       h.enabled,
       h.instance,
       count(d.i_event)                              AS waiting,
       count(d.i_event) FILTER (WHERE d.state = 'PENDING') AS pending,
       count(d.i_event) FILTER (WHERE d.state = 'RETRY')   AS retry,
       min(coalesce(d.committed_at, d.created_at))   AS oldest_committed_at,
       now() - min(coalesce(d.committed_at, d.created_at)) AS oldest_age,
       min(d.next_attempt_at)                        AS next_attempt_at
  FROM espf.handlers h
  LEFT JOIN espf.event_deliveries d ON d.handler = h.name AND d.state IN ('PENDING', 'RETRY')
 WHERE h.kind = 'http'
 GROUP BY h.name, h.enabled, h.instance;

-- One row per shard of every instance split into shards (espf.handlers.shards > 1;
-- README "Shards"): its slot, whether a process streams it now, its slot lag, and
-- what waits for it: events of the types its enabled handlers subscribe to (since
-- they were enabled and subscribed) that have no final outcome for them yet —
-- recorded PENDING or RETRY, or not recorded at all (still in its slot, or caught up
-- when it starts). `retry` and `last_error`: its deliveries failing now. Scans the
-- shard's events in the outbox (bounded by retention).
CREATE OR REPLACE VIEW espf.report_shards AS
WITH inst AS (SELECT h.instance, max(h.shards) AS shards FROM espf.handlers h GROUP BY h.instance HAVING max(h.shards) > 1)
SELECT i.instance,
       k AS shard,
       i.shards,
       espf.shard_slot(i.instance, k, i.shards) AS slot_name,
       coalesce(s.active, false) AS streaming,
       pg_wal_lsn_diff(pg_current_wal_lsn(), coalesce(s.confirmed_flush_lsn, s.restart_lsn))::bigint AS lag_bytes,
       w.waiting_events,
       w.retry,
       w.last_error
  FROM inst i
 CROSS JOIN LATERAL generate_series(0, i.shards - 1) k
  LEFT JOIN pg_replication_slots s ON s.slot_name = espf.shard_slot(i.instance, k, i.shards) AND s.database = current_database()
 CROSS JOIN LATERAL (
       SELECT count(*) AS waiting_events,
              count(*) FILTER (WHERE d.state = 'RETRY') AS retry,
              (array_agg(d.last_error ORDER BY d.last_attempt_at DESC) FILTER (WHERE d.state = 'RETRY' AND d.last_error IS NOT NULL))[1] AS last_error
         FROM espf.handlers h
         JOIN espf.subscriptions sub ON sub.handler = h.name
         JOIN espf.events e ON e.event_type = sub.event_type
                           AND e.created_at >= greatest(sub.created_at, coalesce(h.enabled_at, '-infinity'))
                           AND espf.in_shard(e, k, i.shards)
                           AND espf.event_targets(e.target_handler, h.name, h.kind)
         LEFT JOIN espf.event_deliveries d ON d.i_event = e.i_event AND d.handler = h.name
        WHERE h.instance = i.instance AND h.enabled
          AND (d.state IS NULL OR d.state IN ('PENDING', 'RETRY'))) w;
