-- Reads of the web console (src/console/, docs/console.md). Plain views and
-- functions over what espf records; a DBA may SELECT from them too.

-- One row per handler: what waits, what was delivered lately (per minute),
-- what failed for good in the last 24 hours, the latest error, and how many of
-- its URLs the circuit breaker holds down (espf.target_states). The finished
-- counts come from espf.delivery_minutes (sql/420_delivery_minutes.sql), whole
-- minutes of finished_at: delivered_per_min is the deliveries of the minutes
-- from the one that began 5 minutes ago up to now, divided by that span in
-- minutes (5 to 6); failed_24h counts the minutes from the one that began 24
-- hours ago.
CREATE OR REPLACE VIEW espf.console_overview AS
SELECT h.name AS handler,
       h.kind,
       h.enabled,
       h.instance,
       coalesce(w.waiting, 0)      AS waiting,
       coalesce(w.pending, 0)      AS pending,
       coalesce(w.retry, 0)        AS retry,
       w.oldest_age_s,
       coalesce(m.delivered_5, 0)::float8
         / (extract(epoch FROM now() - date_trunc('minute', now() - interval '5 minutes'))::float8 / 60) AS delivered_per_min,
       coalesce(m.failed_24h, 0)::bigint AS failed_24h,
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
  LEFT JOIN LATERAL (
        SELECT sum(x.delivered) FILTER (WHERE x.minute >= date_trunc('minute', now() - interval '5 minutes')) AS delivered_5,
               sum(x.failed) AS failed_24h
          FROM espf.delivery_minutes x
         WHERE x.handler = h.name AND x.minute >= date_trunc('minute', now() - interval '24 hours')) m ON true
  -- the latest error of a waiting delivery, and of one that failed for good in the last 24 hours
  LEFT JOIN LATERAL (
        SELECT d.last_error, d.last_attempt_at AS at FROM espf.event_deliveries d
         WHERE d.handler = h.name AND d.state IN ('PENDING', 'RETRY') AND d.last_error IS NOT NULL
         ORDER BY d.last_attempt_at DESC NULLS LAST LIMIT 1) r ON true
  LEFT JOIN LATERAL (
        SELECT d.last_error, d.finished_at AS at FROM espf.event_deliveries d
         WHERE d.handler = h.name AND d.state = 'FAILED' AND d.finished_at >= now() - interval '24 hours'
           AND coalesce(m.failed_24h, 0) > 0   -- no failure to look for: no scan
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
-- hours (bucket 0 is the oldest): delivered (or dispatched) and failed for good,
-- from espf.delivery_minutes: a minute counts in the slice its start falls in
-- (the minute that began before the first slice, in the first).
CREATE OR REPLACE FUNCTION espf.console_series(hours int DEFAULT 6, buckets int DEFAULT 36)
RETURNS TABLE (handler text, bucket int, delivered bigint, failed bigint)
LANGUAGE sql STABLE AS $$
  SELECT m.handler,
         greatest(0, least(buckets - 1, floor(extract(epoch FROM m.minute - (now() - make_interval(hours => hours)))
                                              / (hours * 3600.0 / buckets))))::int AS bucket,
         sum(m.delivered)::bigint AS delivered,
         sum(m.failed)::bigint AS failed
    FROM espf.delivery_minutes m
   WHERE m.minute >= date_trunc('minute', now() - make_interval(hours => hours))
   GROUP BY 1, 2
$$;
