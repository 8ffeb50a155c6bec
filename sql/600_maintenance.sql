-- Maintenance and failure e-mails (docs/maintenance.md): the checks of their
-- configuration rows, the fleet-wide gate, and one function per task.

-- espf.notifications: refused with the column and the rule (espf.refuse, sql/020).
CREATE OR REPLACE FUNCTION espf.check_notifications() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  r text;
BEGIN
  IF NEW.smtp_url LIKE 'env:%' AND espf.env_ref_problem(NEW.smtp_url) IS NOT NULL THEN
    PERFORM espf.refuse('espf.notifications.smtp_url', espf.env_ref_problem(NEW.smtp_url));
  END IF;
  IF NEW.smtp_url IS NOT NULL
     AND NEW.smtp_url !~* '^smtps?://[^/\s?#]+(/\S*)?$'
     AND NEW.smtp_url NOT LIKE 'env:%' THEN
    -- Never quote the value: it may carry a password.
    PERFORM espf.refuse('espf.notifications.smtp_url', 'must be smtp://[user:password@]host[:port] or smtps://…, or env:NAME to read it from the environment variable NAME');
  END IF;
  IF NEW.mail_from IS NOT NULL AND NEW.mail_from !~ '^[^@\s<>]+@[^@\s<>]+$' AND NEW.mail_from !~ '^[^<>]*<[^@\s<>]+@[^@\s<>]+>$' THEN
    PERFORM espf.refuse('espf.notifications.mail_from', format('%L is not an e-mail address (name@host or "Name <name@host>")', NEW.mail_from));
  END IF;
  IF NEW.recipients IS NULL THEN
    PERFORM espf.refuse('espf.notifications.recipients', 'must be a list of e-mail addresses, not null (use ''{}'' for none)');
  END IF;
  FOREACH r IN ARRAY NEW.recipients LOOP
    IF r IS NULL OR r !~ '^[^@\s<>,]+@[^@\s<>,]+$' THEN
      PERFORM espf.refuse('espf.notifications.recipients', format('%L is not an e-mail address (name@host)', r));
    END IF;
  END LOOP;
  IF NEW.enabled AND (NEW.smtp_url IS NULL OR NEW.mail_from IS NULL OR cardinality(NEW.recipients) = 0) THEN
    PERFORM espf.refuse('espf.notifications.enabled', 'e-mails cannot be enabled without smtp_url, mail_from and at least one of recipients');
  END IF;
  IF NEW.digest_interval IS NULL OR NEW.digest_interval <= interval '0' OR NOT isfinite(NEW.digest_interval) THEN
    PERFORM espf.refuse('espf.notifications.digest_interval', format('must be > 0 and finite, not %s', coalesce(NEW.digest_interval::text, 'null')));
  END IF;
  IF NEW.unreachable_after IS NULL OR NEW.unreachable_after <= interval '0' OR NOT isfinite(NEW.unreachable_after) THEN
    PERFORM espf.refuse('espf.notifications.unreachable_after', format('must be > 0 and finite, not %s', coalesce(NEW.unreachable_after::text, 'null')));
  END IF;
  RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER check_notifications BEFORE INSERT OR UPDATE ON espf.notifications
  FOR EACH ROW EXECUTE FUNCTION espf.check_notifications();

-- espf.maintenance
CREATE OR REPLACE FUNCTION espf.check_maintenance() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.pass_interval IS NULL OR NEW.pass_interval <= interval '0' OR NOT isfinite(NEW.pass_interval) THEN
    PERFORM espf.refuse('espf.maintenance.pass_interval', format('must be > 0 and finite, not %s', coalesce(NEW.pass_interval::text, 'null')));
  END IF;
  IF NEW.retention IS NULL OR NEW.retention <= interval '0' OR NOT isfinite(NEW.retention) THEN
    PERFORM espf.refuse('espf.maintenance.retention', format('must be > 0 and finite, not %s', coalesce(NEW.retention::text, 'null')));
  END IF;
  IF NEW.purge_batch IS NULL OR NEW.purge_batch < 1 OR NEW.purge_batch > 100000 THEN
    PERFORM espf.refuse('espf.maintenance.purge_batch', format('must be between 1 and 100000 rows, not %s', coalesce(NEW.purge_batch::text, 'null')));
  END IF;
  IF NEW.slot_lag_warn_bytes IS NULL OR NEW.slot_lag_warn_bytes < 1 THEN
    PERFORM espf.refuse('espf.maintenance.slot_lag_warn_bytes', format('must be >= 1 byte, not %s', coalesce(NEW.slot_lag_warn_bytes::text, 'null')));
  END IF;
  RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER check_maintenance BEFORE INSERT OR UPDATE ON espf.maintenance
  FOR EACH ROW EXECUTE FUNCTION espf.check_maintenance();

-- The gate: true for exactly one caller per interval, across every instance.
-- Two callers at once: the second waits for the first's row lock, then sees the
-- new last_run_at and updates nothing. The digest runs every
-- espf.notifications.digest_interval, the other tasks every espf.maintenance.pass_interval.
CREATE OR REPLACE FUNCTION espf.claim_maintenance(task text, instance text)
RETURNS boolean LANGUAGE sql AS $$
  WITH claimed AS (
    UPDATE espf.maintenance_runs r
       SET last_run_at = now(), last_instance = claim_maintenance.instance
     WHERE r.task = claim_maintenance.task
       AND r.last_run_at <= now() - CASE WHEN r.task = 'digest'
                                         THEN (SELECT n.digest_interval FROM espf.notifications n)
                                         ELSE (SELECT m.pass_interval FROM espf.maintenance m) END
    RETURNING 1)
  SELECT EXISTS (SELECT 1 FROM claimed)
$$;

-- What a pass did, for operators (SELECT * FROM espf.maintenance_runs).
CREATE OR REPLACE FUNCTION espf.maintenance_done(task text, result jsonb)
RETURNS void LANGUAGE sql AS $$
  UPDATE espf.maintenance_runs r SET last_result = maintenance_done.result WHERE r.task = maintenance_done.task
$$;

-- Purge, one batch per call (one short transaction; rows locked by someone else
-- are skipped). Finished deliveries older than the cutoff:
CREATE OR REPLACE FUNCTION espf.purge_deliveries(cutoff timestamptz, batch int)
RETURNS int LANGUAGE sql AS $$
  WITH gone AS (
    DELETE FROM espf.event_deliveries
     WHERE ctid = ANY (ARRAY(
             SELECT d.ctid FROM espf.event_deliveries d
              WHERE d.state IN ('DELIVERED', 'FAILED', 'DISPATCHED', 'SUPERSEDED', 'SKIPPED')
                AND d.finished_at < cutoff
              LIMIT batch
                FOR UPDATE SKIP LOCKED))
    RETURNING 1)
  SELECT count(*)::int FROM gone
$$;

-- Events older than the cutoff none of whose deliveries is waiting or recent
-- (events no handler was subscribed to have no delivery at all).
CREATE OR REPLACE FUNCTION espf.purge_events(cutoff timestamptz, batch int)
RETURNS int LANGUAGE sql AS $$
  WITH gone AS (
    DELETE FROM espf.events
     WHERE ctid = ANY (ARRAY(
             SELECT e.ctid FROM espf.events e
              WHERE e.created_at < cutoff
                AND NOT EXISTS (
                      SELECT 1 FROM espf.event_deliveries d
                       WHERE d.i_event = e.i_event
                         AND (d.state IN ('PENDING', 'RETRY') OR d.finished_at IS NULL OR d.finished_at >= cutoff))
              LIMIT batch
                FOR UPDATE SKIP LOCKED))
    RETURNING 1)
  SELECT count(*)::int FROM gone
$$;

CREATE OR REPLACE FUNCTION espf.purge_failure_notices(cutoff timestamptz, batch int)
RETURNS int LANGUAGE sql AS $$
  WITH gone AS (
    DELETE FROM espf.failure_notices
     WHERE ctid = ANY (ARRAY(
             SELECT n.ctid FROM espf.failure_notices n
              WHERE n.notified_at < cutoff
              LIMIT batch
                FOR UPDATE SKIP LOCKED))
    RETURNING 1)
  SELECT count(*)::int FROM gone
$$;

-- Reclaim, one batch per call: waiting deliveries whose `instance` is not the
-- instance that serves their handler now (espf.handlers.instance changed, e.g.
-- after the old instance died) are given to the handler's instance.
-- Returns one row per (handler, from, to) with the number of rows moved.
CREATE OR REPLACE FUNCTION espf.reclaim_deliveries(batch int)
RETURNS TABLE (handler text, from_instance text, to_instance text, deliveries int)
LANGUAGE sql AS $$
  WITH todo AS (
    SELECT d.ctid AS row_id, d.instance AS old_instance, h.instance AS new_instance
      FROM espf.event_deliveries d
      JOIN espf.handlers h ON h.name = d.handler
     WHERE d.state IN ('PENDING', 'RETRY') AND d.instance <> h.instance
     LIMIT batch
       FOR UPDATE OF d SKIP LOCKED),
  moved AS (
    UPDATE espf.event_deliveries d
       SET instance = t.new_instance, requeued = true   -- the new instance takes them while it runs
      FROM todo t
     WHERE d.ctid = t.row_id
    RETURNING d.handler, t.old_instance, t.new_instance)
  SELECT m.handler, m.old_instance, m.new_instance, count(*)::int
    FROM moved m
   GROUP BY 1, 2, 3
   ORDER BY 1, 2, 3
$$;

-- Replication slot lag of every espf_% slot of this database: WAL written since
-- the position the slot's consumer confirmed (lag_bytes), and WAL the server
-- keeps for the slot (retained_bytes, from restart_lsn).
CREATE OR REPLACE FUNCTION espf.slot_lag()
RETURNS TABLE (slot_name text, active boolean, lag_bytes bigint, retained_bytes bigint, wal_status text)
LANGUAGE sql STABLE AS $$
  SELECT s.slot_name::text,
         s.active,
         pg_wal_lsn_diff(pg_current_wal_lsn(), coalesce(s.confirmed_flush_lsn, s.restart_lsn))::bigint,
         pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn)::bigint,
         s.wal_status
    FROM pg_replication_slots s
   WHERE s.slot_name LIKE 'espf\_%' AND s.database = current_database()
   ORDER BY s.slot_name
$$;

-- Digest: deliveries that failed for good since `since` and were not reported yet
-- (at most `max_rows`, oldest first).
CREATE OR REPLACE FUNCTION espf.unreported_failures(since timestamptz, max_rows int)
RETURNS TABLE (i_event bigint, handler text, event_type text, i_account bigint, attempts int,
               last_http_status int, last_error text, finished_at timestamptz)
LANGUAGE sql STABLE AS $$
  SELECT d.i_event, d.handler, d.event_type, d.i_account, d.attempts, d.last_http_status, d.last_error, d.finished_at
    FROM espf.event_deliveries d
   WHERE d.state = 'FAILED'
     AND d.finished_at > since
     AND NOT EXISTS (SELECT 1 FROM espf.failure_notices n
                      WHERE n.i_event = d.i_event AND n.handler = d.handler AND n.finished_at = d.finished_at)
   ORDER BY d.finished_at, d.i_event, d.handler
   LIMIT max_rows
$$;

-- Digest: targets (handlers) whose deliveries have been failing for longer than
-- `older_than` (RETRY since the first attempt), with the newest error.
CREATE OR REPLACE FUNCTION espf.unreachable_targets(older_than interval)
RETURNS TABLE (handler text, instance text, url text[], failing bigint, failing_since timestamptz,
               last_http_status int, last_error text)
LANGUAGE sql STABLE AS $$
  SELECT d.handler,
         h.instance,
         hh.url,
         count(*),
         min(d.first_attempt_at),
         (array_agg(d.last_http_status ORDER BY d.last_attempt_at DESC NULLS LAST))[1],
         (array_agg(d.last_error ORDER BY d.last_attempt_at DESC NULLS LAST))[1]
    FROM espf.event_deliveries d
    LEFT JOIN espf.handlers h ON h.name = d.handler
    LEFT JOIN espf.http_handlers hh ON hh.handler = d.handler
   WHERE d.state = 'RETRY' AND d.first_attempt_at < now() - older_than
   GROUP BY d.handler, h.instance, hh.url
   ORDER BY d.handler
$$;

-- Digest: the failures just e-mailed are not reported again.
CREATE OR REPLACE FUNCTION espf.note_failures_notified(i_events bigint[], handlers text[], finished timestamptz[])
RETURNS void LANGUAGE sql AS $$
  INSERT INTO espf.failure_notices (i_event, handler, finished_at)
  SELECT * FROM unnest(i_events, handlers, finished)
  ON CONFLICT DO NOTHING;
  UPDATE espf.maintenance_runs SET last_notified_at = now() WHERE task = 'digest';
$$;

-- The one row of espf.notifications and of espf.maintenance is updated, never deleted.
CREATE OR REPLACE FUNCTION espf.keep_settings_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM espf.refuse(format('espf.%s.id', TG_TABLE_NAME), format('the settings row of espf.%s cannot be deleted; UPDATE it instead', TG_TABLE_NAME));
  RETURN OLD;
END
$$;
CREATE OR REPLACE TRIGGER keep_settings_row BEFORE DELETE ON espf.notifications
  FOR EACH ROW EXECUTE FUNCTION espf.keep_settings_row();
CREATE OR REPLACE TRIGGER keep_settings_row BEFORE DELETE ON espf.maintenance
  FOR EACH ROW EXECUTE FUNCTION espf.keep_settings_row();
