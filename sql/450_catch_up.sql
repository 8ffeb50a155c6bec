-- Catch-up: events that no replication slot carried to a handler are delivered
-- when its instance starts (README "Guarantees", docs/operations.md).
--
-- A logical replication slot carries only what commits after it exists. The
-- slot espf_<instance> is made by the first `espf run --instance <instance>`,
-- so events committed before that, or while a handler moved to an instance
-- that was not running yet, would never reach the handler. On every start,
-- before it streams, `espf run` (src/run/catch-up.ts):
--   1. makes its slot if missing (from then on the slot carries every commit);
--   2. calls espf.catch_up(instance, slot_created): for each enabled handler of
--      the instance that its slot does not already cover (espf.handler_coverage),
--      the events of its types created while it was enabled and subscribed that
--      have no row in espf.event_deliveries for it are recorded PENDING (http
--      handlers; the start-up resumes them before anything new) or dispatched
--      (dispatchers); it returns pg_current_wal_insert_lsn() read after that;
--   3. raises its replay horizon to that position: a streamed transaction that
--      ends at or below it is checked against espf.event_deliveries and the
--      (event, handler) pairs already recorded are skipped.
-- A transaction the catch-up saw had committed before its snapshot, so it ends
-- below the returned position and its pairs have rows: it is skipped. One the
-- catch-up did not see has no row for the handler: the slot (made before the
-- snapshot) carries it and it is delivered. No pair is lost or sent twice.

-- Events of a handler whose transaction started at most this long before the
-- point a slot covered it from are looked at again (transactions commit after
-- they start; their created_at is the start).
CREATE OR REPLACE FUNCTION espf.catch_up_slack() RETURNS interval LANGUAGE sql IMMUTABLE AS $$ SELECT interval '10 minutes' $$;

-- espf.handlers.enabled_at: when the handler was last enabled.
CREATE OR REPLACE FUNCTION espf.handler_enabled_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.enabled AND (TG_OP = 'INSERT' OR NOT OLD.enabled) THEN
    NEW.enabled_at := now();
  ELSIF NOT NEW.enabled THEN
    NEW.enabled_at := NULL;
  END IF;
  RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER handler_enabled_at BEFORE INSERT OR UPDATE OF enabled ON espf.handlers
  FOR EACH ROW EXECUTE FUNCTION espf.handler_enabled_at();

-- A handler moved to another instance: the old instance's slot no longer
-- carries it. Keep how far that instance had processed the stream; the new
-- instance catches up from there when it starts.
CREATE OR REPLACE FUNCTION espf.handler_moved() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
  UPDATE espf.handler_coverage c
     SET covered_until = CASE WHEN c.served_by = OLD.instance
                              THEN (SELECT i.processed_until FROM espf.instances i WHERE i.name = OLD.instance)
                              ELSE c.covered_until END,
         served_by = NULL, served_since = NULL
   WHERE c.handler = NEW.name;
  RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER handler_moved AFTER UPDATE OF instance ON espf.handlers
  FOR EACH ROW WHEN (OLD.instance IS DISTINCT FROM NEW.instance) EXECUTE FUNCTION espf.handler_moved();
