-- espf resend (docs/cli.md): put finished deliveries back in the queue.
--
-- Selects rows of espf.event_deliveries by any combination of
--   i_events  the deliveries of these events
--   i_account the deliveries of this account
--   handler   the deliveries to this handler
--   status    'DELIVERED' or 'FAILED' (else both)
--   since     finished at or after this time
--   event_type    the deliveries of events of this type
--   created_since created (recorded) at or after this time
--   created_until created before this time
-- (at least one of the first five), and only finished ones (DELIVERED, FAILED) that
-- finished at or before `until` (default: now(); `espf resend` passes the time
-- it started, so a delivery it re-queued and that finished again meanwhile is
-- not taken twice). Each call re-queues at most `max_rows` of them, lowest
-- i_event first, in one transaction: state PENDING, attempts and urls_done 0,
-- no error, no next attempt, not finished, the handler's current instance, and
-- `requeued`, which the running instance of the handler takes within about a
-- second (espf.take_requeued). Call it again until it returns 0:
--
--   SELECT espf.resend(status => 'FAILED', since => now() - interval '1 day');
--
-- With dry_run it changes nothing and returns how many rows would be re-queued
-- (all of them: max_rows is ignored).
-- The three last filters came later: the function of the earlier release
-- (without them) is dropped, so that a call by name is never ambiguous.
DROP FUNCTION IF EXISTS espf.resend(bigint[], bigint, text, text, timestamptz, timestamptz, int, boolean);

CREATE OR REPLACE FUNCTION espf.resend(
  i_events  bigint[]    DEFAULT NULL,
  i_account bigint      DEFAULT NULL,
  handler   text        DEFAULT NULL,
  status    text        DEFAULT NULL,
  since     timestamptz DEFAULT NULL,
  until     timestamptz DEFAULT NULL,
  max_rows  int         DEFAULT 5000,
  dry_run   boolean     DEFAULT false,
  event_type    text        DEFAULT NULL,
  created_since timestamptz DEFAULT NULL,
  created_until timestamptz DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  n bigint;
  cutoff timestamptz := coalesce(resend.until, now());
BEGIN
  IF resend.i_events IS NULL AND resend.i_account IS NULL AND resend.handler IS NULL
     AND resend.status IS NULL AND resend.since IS NULL THEN
    RAISE EXCEPTION 'espf.resend: give at least one of i_events, i_account, handler, status, since'
      USING ERRCODE = '22023';
  END IF;
  IF resend.status IS NOT NULL AND resend.status NOT IN ('DELIVERED', 'FAILED') THEN
    RAISE EXCEPTION 'espf.resend: status ''%'': use DELIVERED or FAILED (only finished deliveries are re-queued)', resend.status
      USING ERRCODE = '22023';
  END IF;
  IF resend.handler IS NOT NULL AND NOT EXISTS (SELECT 1 FROM espf.handlers h WHERE h.name = resend.handler) THEN
    RAISE EXCEPTION 'espf.resend: unknown handler ''%'' (not a row of espf.handlers)', resend.handler
      USING ERRCODE = '23503';
  END IF;
  IF resend.max_rows IS NULL OR resend.max_rows < 1 THEN
    RAISE EXCEPTION 'espf.resend: max_rows must be at least 1' USING ERRCODE = '22023';
  END IF;

  IF dry_run THEN
    SELECT count(*) INTO n
      FROM espf.event_deliveries d
     WHERE d.state IN ('DELIVERED', 'FAILED')
       AND d.finished_at <= cutoff
       AND (resend.i_events IS NULL OR d.i_event = ANY (resend.i_events))
       AND (resend.i_account IS NULL OR d.i_account = resend.i_account)
       AND (resend.handler IS NULL OR d.handler = resend.handler)
       AND (resend.status IS NULL OR d.state = resend.status)
       AND (resend.since IS NULL OR d.finished_at >= resend.since)
       AND (resend.event_type IS NULL OR d.event_type = resend.event_type)
       AND (resend.created_since IS NULL OR d.created_at >= resend.created_since)
       AND (resend.created_until IS NULL OR d.created_at < resend.created_until);
    RETURN n;
  END IF;

  WITH todo AS (
    SELECT d.i_event, d.handler
      FROM espf.event_deliveries d
     WHERE d.state IN ('DELIVERED', 'FAILED')
       AND d.finished_at <= cutoff
       AND (resend.i_events IS NULL OR d.i_event = ANY (resend.i_events))
       AND (resend.i_account IS NULL OR d.i_account = resend.i_account)
       AND (resend.handler IS NULL OR d.handler = resend.handler)
       AND (resend.status IS NULL OR d.state = resend.status)
       AND (resend.since IS NULL OR d.finished_at >= resend.since)
       AND (resend.event_type IS NULL OR d.event_type = resend.event_type)
       AND (resend.created_since IS NULL OR d.created_at >= resend.created_since)
       AND (resend.created_until IS NULL OR d.created_at < resend.created_until)
     ORDER BY d.i_event, d.handler
     LIMIT resend.max_rows
       FOR UPDATE OF d),
  done AS (
    UPDATE espf.event_deliveries d
       SET state = 'PENDING', attempts = 0, urls_done = 0, steps_done = 0, step_answers = NULL, last_http_status = NULL, last_error = NULL,
           next_attempt_at = NULL, finished_at = NULL, instance = h.instance, requeued = true
      FROM todo t, espf.handlers h
     WHERE d.i_event = t.i_event AND d.handler = t.handler AND h.name = d.handler
    RETURNING 1)
  SELECT count(*) INTO n FROM done;
  RETURN n;
END
$$;

-- `--since` of espf resend: a time ('2026-11-25', '2026-11-25 21:00+01', 'yesterday')
-- or an interval back from now ('24 hours', '2 days'). NULL when it is neither.
CREATE OR REPLACE FUNCTION espf.resend_since(value text)
RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
BEGIN
  BEGIN
    RETURN value::timestamptz;
  EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR invalid_parameter_value THEN
    NULL;
  END;
  BEGIN
    RETURN now() - value::interval;
  EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow OR invalid_parameter_value THEN
    RETURN NULL;
  END;
END
$$;
