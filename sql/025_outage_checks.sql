-- The circuit breaker settings of espf.http_handlers (migrations/0012_outage.sql),
-- checked by the database whoever writes them, with the column and the rule
-- (SQLSTATE 23514). numeric columns accept 'NaN' and 'Infinity', and NaN sorts
-- above every number: each delay has an upper bound, which refuses both. The
-- bound (7 days) keeps every probe interval within what the sender's timers hold.
CREATE OR REPLACE FUNCTION espf.check_breaker_settings(r espf.http_handlers) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF r.breaker_failures IS NULL OR r.breaker_failures < 1 OR r.breaker_failures > 1000000 THEN
    PERFORM espf.refuse('espf.http_handlers.breaker_failures',
      format('must be a whole number of failed attempts from 1 to 1000000, not %s', coalesce(r.breaker_failures::text, 'null')));
  END IF;
  IF r.probe_delay IS NULL OR NOT (r.probe_delay > 0 AND r.probe_delay <= 604800) THEN
    PERFORM espf.refuse('espf.http_handlers.probe_delay',
      format('must be > 0 and <= 604800 seconds (7 days), not %s', coalesce(r.probe_delay::text, 'null')));
  END IF;
  IF r.probe_max_delay IS NULL OR NOT (r.probe_max_delay >= r.probe_delay AND r.probe_max_delay <= 604800) THEN
    PERFORM espf.refuse('espf.http_handlers.probe_max_delay',
      format('must be >= probe_delay (%s) and <= 604800 seconds (7 days), not %s', r.probe_delay, coalesce(r.probe_max_delay::text, 'null')));
  END IF;
END
$$;

-- The same rules for a handler's row and for each environment's settings merged
-- with it (sql/026_http_handler_envs.sql).
CREATE OR REPLACE FUNCTION espf.check_http_handler_breaker() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM espf.check_breaker_settings(NEW);
  RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER check_http_handler_breaker BEFORE INSERT OR UPDATE ON espf.http_handlers
  FOR EACH ROW EXECUTE FUNCTION espf.check_http_handler_breaker();
