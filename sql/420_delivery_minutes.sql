-- Finished deliveries per handler and minute (espf.delivery_minutes,
-- migrations/0023_delivery_minutes.sql), for the console's overview
-- (sql/800_console.sql). Statement triggers on espf.event_deliveries keep it
-- exact whoever writes: the record path (espf.record_deliveries), dispatch,
-- the catch-up, a resend, reclaim and the purge. Each statement adds its
-- difference (rows that became DELIVERED, DISPATCHED or FAILED count +1 in
-- the minute of their finished_at, rows that were so count -1) in one upsert
-- per (handler, minute), in (handler, minute) order, so that two writers
-- never wait on each other's rows in opposite orders. Minutes before
-- espf.delivery_minutes_state.kept_from are not kept.

-- Adds deltas to the counts (zero deltas skipped), in key order; a minute
-- whose counts fell to zero (its deliveries purged or re-sent) is removed.
CREATE OR REPLACE FUNCTION espf.add_delivery_minutes(handlers text[], minutes timestamptz[], delivered bigint[], failed bigint[])
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  INSERT INTO espf.delivery_minutes AS m (handler, minute, delivered, failed)
  SELECT x.handler, x.minute, x.delivered, x.failed
    FROM unnest(handlers, minutes, delivered, failed) AS x(handler, minute, delivered, failed)
   WHERE (x.delivered <> 0 OR x.failed <> 0)
     AND x.minute >= (SELECT s.kept_from FROM espf.delivery_minutes_state s)
   ORDER BY x.handler, x.minute
  ON CONFLICT (handler, minute) DO UPDATE
     SET delivered = m.delivered + excluded.delivered, failed = m.failed + excluded.failed;
  IF EXISTS (SELECT FROM unnest(delivered, failed) AS x(d, f) WHERE x.d < 0 OR x.f < 0) THEN
    DELETE FROM espf.delivery_minutes m
     USING unnest(handlers, minutes) AS x(handler, minute)
     WHERE m.handler = x.handler AND m.minute = x.minute AND m.delivered = 0 AND m.failed = 0;
  END IF;
END
$$;
REVOKE EXECUTE ON FUNCTION espf.add_delivery_minutes(text[], timestamptz[], bigint[], bigint[]) FROM PUBLIC, espf_sender;

-- The trigger function of the three row-changing triggers: the transition
-- tables it reads exist for its own event only (old_rows for UPDATE and
-- DELETE, new_rows for INSERT and UPDATE).
--
-- espf.record_deliveries (sql/400_results.sql) counts the rows it writes
-- itself, from its records, with espf.minutes_counted set for its call: then
-- its INSERT adds nothing here, and its UPDATE (a record that rewrote a row)
-- only takes out what the old rows counted.
CREATE OR REPLACE FUNCTION espf.delivery_minutes_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  h text[]; m timestamptz[]; d bigint[]; f bigint[];
  counted constant boolean := current_setting('espf.minutes_counted', true) = 'on';
BEGIN
  IF TG_OP = 'INSERT' AND counted THEN
    RETURN NULL;
  ELSIF TG_OP = 'INSERT' THEN
    SELECT array_agg(x.handler), array_agg(x.minute), array_agg(x.d), array_agg(x.f) INTO h, m, d, f
      FROM (SELECT r.handler, date_trunc('minute', r.finished_at) AS minute,
                   count(*) FILTER (WHERE r.state <> 'FAILED') AS d, count(*) FILTER (WHERE r.state = 'FAILED') AS f
              FROM new_rows r
             WHERE r.state IN ('DELIVERED', 'DISPATCHED', 'FAILED') AND r.finished_at IS NOT NULL
             GROUP BY 1, 2) x;
  ELSIF TG_OP = 'DELETE' OR counted THEN
    SELECT array_agg(x.handler), array_agg(x.minute), array_agg(-x.d), array_agg(-x.f) INTO h, m, d, f
      FROM (SELECT r.handler, date_trunc('minute', r.finished_at) AS minute,
                   count(*) FILTER (WHERE r.state <> 'FAILED') AS d, count(*) FILTER (WHERE r.state = 'FAILED') AS f
              FROM old_rows r
             WHERE r.state IN ('DELIVERED', 'DISPATCHED', 'FAILED') AND r.finished_at IS NOT NULL
             GROUP BY 1, 2) x;
  ELSE
    SELECT array_agg(x.handler), array_agg(x.minute), array_agg(x.d), array_agg(x.f) INTO h, m, d, f
      FROM (SELECT r.handler, date_trunc('minute', r.finished_at) AS minute,
                   coalesce(sum(r.sign) FILTER (WHERE r.state <> 'FAILED'), 0)::bigint AS d,
                   coalesce(sum(r.sign) FILTER (WHERE r.state = 'FAILED'), 0)::bigint AS f
              FROM (SELECT n.handler, n.state, n.finished_at, 1 AS sign FROM new_rows n
                     WHERE n.state IN ('DELIVERED', 'DISPATCHED', 'FAILED') AND n.finished_at IS NOT NULL
                    UNION ALL
                    SELECT o.handler, o.state, o.finished_at, -1 FROM old_rows o
                     WHERE o.state IN ('DELIVERED', 'DISPATCHED', 'FAILED') AND o.finished_at IS NOT NULL) r
             GROUP BY 1, 2) x;
  END IF;
  IF h IS NOT NULL THEN
    PERFORM espf.add_delivery_minutes(h, m, coalesce(d, '{}'), coalesce(f, '{}'));
  END IF;
  RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION espf.delivery_minutes_truncated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  DELETE FROM espf.delivery_minutes;
  RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER delivery_minutes_insert AFTER INSERT ON espf.event_deliveries
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION espf.delivery_minutes_changed();
CREATE OR REPLACE TRIGGER delivery_minutes_update AFTER UPDATE ON espf.event_deliveries
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION espf.delivery_minutes_changed();
CREATE OR REPLACE TRIGGER delivery_minutes_delete AFTER DELETE ON espf.event_deliveries
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION espf.delivery_minutes_changed();
CREATE OR REPLACE TRIGGER delivery_minutes_truncate AFTER TRUNCATE ON espf.event_deliveries
  FOR EACH STATEMENT EXECUTE FUNCTION espf.delivery_minutes_truncated();

-- Once, at the first migrate with this file: the deliveries finished in the
-- last 25 hours are counted (the overview's longest window is 24 hours), in
-- this transaction, which holds the triggers' lock on espf.event_deliveries
-- (writes of deliveries wait while it counts: about 3 s per million
-- deliveries of those 25 hours, docs/console.md). Older minutes are not kept.
DO $$
BEGIN
  IF (SELECT built FROM espf.delivery_minutes_state) THEN
    RETURN;
  END IF;
  UPDATE espf.delivery_minutes_state
     SET built = true, built_at = now(),
         kept_from = CASE WHEN EXISTS (SELECT 1 FROM espf.event_deliveries d WHERE d.finished_at < date_trunc('minute', now() - interval '25 hours'))
                          THEN date_trunc('minute', now() - interval '25 hours') ELSE '-infinity' END;
  DELETE FROM espf.delivery_minutes;
  INSERT INTO espf.delivery_minutes (handler, minute, delivered, failed)
  SELECT d.handler, date_trunc('minute', d.finished_at),
         count(*) FILTER (WHERE d.state <> 'FAILED'), count(*) FILTER (WHERE d.state = 'FAILED')
    FROM espf.event_deliveries d
   WHERE d.state IN ('DELIVERED', 'DISPATCHED', 'FAILED')
     AND d.finished_at >= (SELECT s.kept_from FROM espf.delivery_minutes_state s)
   GROUP BY 1, 2;
END
$$;
