-- Reads of the web console (src/console/, docs/console.md). Plain views and
-- functions over what espf records; a DBA may SELECT from them too.

-- One row per handler: what waits, what was delivered in the last 5 minutes
-- (per minute), what failed for good in the last 24 hours, the latest error,
-- and how many of its URLs the circuit breaker holds down (espf.target_states).
CREATE OR REPLACE VIEW espf.console_overview AS
SELECT h.name AS handler,
       h.kind,
       h.enabled,
       h.instance,
       coalesce(w.waiting, 0)      AS waiting,
       coalesce(w.pending, 0)      AS pending,
       coalesce(w.retry, 0)        AS retry,
       w.oldest_age_s,
       (SELECT count(*) FROM espf.event_deliveries d
         WHERE d.handler = h.name AND d.finished_at >= now() - interval '5 minutes'
           AND d.state IN ('DELIVERED', 'DISPATCHED'))::float8 / 5 AS delivered_per_min,
       (SELECT count(*) FROM espf.event_deliveries d
         WHERE d.handler = h.name AND d.state = 'FAILED'
           AND d.finished_at >= now() - interval '24 hours') AS failed_24h,
       CASE WHEN f.at IS NULL OR (r.at IS NOT NULL AND r.at >= f.at) THEN r.last_error ELSE f.last_error END AS last_error,
       CASE WHEN f.at IS NULL OR (r.at IS NOT NULL AND r.at >= f.at) THEN r.at ELSE f.at END AS last_error_at,
       (SELECT count(*) FROM espf.target_states ts WHERE ts.handler = h.name AND NOT ts.up) AS targets_down
  FROM espf.handlers h
  LEFT JOIN LATERAL (
        SELECT count(*) AS waiting,
               count(*) FILTER (WHERE d.state = 'PENDING') AS pending,
               count(*) FILTER (WHERE d.state = 'RETRY')   AS retry,
               extract(epoch FROM now() - min(coalesce(d.committed_at, d.created_at)))::float8 AS oldest_age_s
          FROM espf.event_deliveries d
         WHERE d.handler = h.name AND d.state IN ('PENDING', 'RETRY')) w ON true
  -- the latest error of a waiting delivery, and of one that failed for good in the last 24 hours
  LEFT JOIN LATERAL (
        SELECT d.last_error, d.last_attempt_at AS at FROM espf.event_deliveries d
         WHERE d.handler = h.name AND d.state IN ('PENDING', 'RETRY') AND d.last_error IS NOT NULL
         ORDER BY d.last_attempt_at DESC NULLS LAST LIMIT 1) r ON true
  LEFT JOIN LATERAL (
        SELECT d.last_error, d.finished_at AS at FROM espf.event_deliveries d
         WHERE d.handler = h.name AND d.state = 'FAILED' AND d.finished_at >= now() - interval '24 hours'
         ORDER BY d.finished_at DESC LIMIT 1) f ON true;

-- Each instance named in espf.handlers, with its replication slot, how much
-- WAL the slot holds back (bytes behind the current WAL position), and where and
-- when its espf run last started and streamed (espf.instances).
CREATE OR REPLACE VIEW espf.console_slots AS
SELECT i.instance,
       espf.shard_slot(i.instance, 0, 1) AS slot_name,
       s.slot_name IS NOT NULL AS slot_exists,
       coalesce(s.active, false) AS active,
       CASE WHEN s.slot_name IS NOT NULL AND NOT pg_is_in_recovery()
            THEN pg_wal_lsn_diff(pg_current_wal_lsn(), coalesce(s.confirmed_flush_lsn, s.restart_lsn))::bigint END AS lag_bytes,
       r.host,
       r.pid,
       r.started_at,
       r.streamed_at
  FROM (SELECT DISTINCT instance FROM espf.handlers) i
  LEFT JOIN pg_replication_slots s ON s.slot_name = espf.shard_slot(i.instance, 0, 1) AND s.database = current_database()
  LEFT JOIN espf.instances r ON r.name = i.instance;

-- Finished deliveries per handler in `buckets` equal slices of the last `hours`
-- hours (bucket 0 is the oldest): delivered (or dispatched) and failed for good.
CREATE OR REPLACE FUNCTION espf.console_series(hours int DEFAULT 6, buckets int DEFAULT 36)
RETURNS TABLE (handler text, bucket int, delivered bigint, failed bigint)
LANGUAGE sql STABLE AS $$
  SELECT d.handler,
         least(buckets - 1, floor(extract(epoch FROM d.finished_at - (now() - make_interval(hours => hours)))
                                  / (hours * 3600.0 / buckets)))::int AS bucket,
         count(*) FILTER (WHERE d.state IN ('DELIVERED', 'DISPATCHED')) AS delivered,
         count(*) FILTER (WHERE d.state = 'FAILED') AS failed
    FROM espf.event_deliveries d
   WHERE d.finished_at >= now() - make_interval(hours => hours)
   GROUP BY 1, 2
$$;
