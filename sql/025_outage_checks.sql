-- The circuit breaker settings of espf.http_handlers (migrations/0012_outage.sql),
-- checked by the database whoever writes them, with the column and the rule
-- (SQLSTATE 23514). numeric columns accept 'NaN' and 'Infinity', and NaN sorts
-- above every number: each delay has an upper bound, which refuses both. The
-- bound (7 days) keeps every probe interval within what the sender's timers hold.
CREATE OR REPLACE FUNCTION espf.check_http_handler_breaker() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.breaker_failures IS NULL OR NEW.breaker_failures < 1 OR NEW.breaker_failures > 1000000 THEN
    PERFORM espf.refuse('espf.http_handlers.breaker_failures',
      format('must be a whole number of failed attempts from 1 to 1000000, not %s', coalesce(NEW.breaker_failures::text, 'null')));
  END IF;
  IF NEW.probe_delay IS NULL OR NOT (NEW.probe_delay > 0 AND NEW.probe_delay <= 604800) THEN
    PERFORM espf.refuse('espf.http_handlers.probe_delay',
      format('must be > 0 and <= 604800 seconds (7 days), not %s', coalesce(NEW.probe_delay::text, 'null')));
  END IF;
  IF NEW.probe_max_delay IS NULL OR NOT (NEW.probe_max_delay >= NEW.probe_delay AND NEW.probe_max_delay <= 604800) THEN
    PERFORM espf.refuse('espf.http_handlers.probe_max_delay',
      format('must be >= probe_delay (%s) and <= 604800 seconds (7 days), not %s', NEW.probe_delay, coalesce(NEW.probe_max_delay::text, 'null')));
  END IF;
  RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER check_http_handler_breaker BEFORE INSERT OR UPDATE ON espf.http_handlers
  FOR EACH ROW EXECUTE FUNCTION espf.check_http_handler_breaker();
