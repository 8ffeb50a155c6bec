-- Capture is switched per event type by enabling or disabling the type's
-- triggers on the billing tables. A disabled trigger costs the billing write
-- path nothing; an enabled one with a false WHEN clause costs a comparison.
--
-- Every capture trigger is named espf_* and passes its event type as its
-- first argument, so this view is the registry of rules.
CREATE OR REPLACE VIEW espf.capture_triggers AS
SELECT split_part(encode(t.tgargs, 'escape'), '\000', 1) AS event_type,
       t.tgrelid::regclass                                AS table_name,
       t.tgname::text                                     AS trigger_name,
       t.tgenabled <> 'D'                                 AS active
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'billing' AND t.tgname LIKE 'espf\_%' AND NOT t.tgisinternal;

-- Makes every capture trigger's state match espf.event_types.enabled.
-- ALTER TABLE … ENABLE/DISABLE TRIGGER takes a SHARE ROW EXCLUSIVE lock on the
-- billing table: it waits for running writes to that table, briefly.
CREATE OR REPLACE FUNCTION espf.sync_capture() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r record;
BEGIN
  FOR r IN
    SELECT c.table_name, c.trigger_name, coalesce(t.enabled, false) AS wanted
      FROM espf.capture_triggers c
      LEFT JOIN espf.event_types t ON t.name = c.event_type
     WHERE c.active IS DISTINCT FROM coalesce(t.enabled, false)
     ORDER BY c.table_name::text, c.trigger_name
  LOOP
    EXECUTE format('ALTER TABLE %s %s TRIGGER %I', r.table_name,
                   CASE WHEN r.wanted THEN 'ENABLE' ELSE 'DISABLE' END, r.trigger_name);
  END LOOP;
END
$$;

-- It runs with its owner's rights: only the owner calls it directly; anyone
-- allowed to update espf.event_types gets it through the trigger below.
REVOKE EXECUTE ON FUNCTION espf.sync_capture() FROM PUBLIC;

CREATE OR REPLACE FUNCTION espf.event_types_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM espf.sync_capture();
  RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER sync_capture AFTER INSERT OR DELETE OR UPDATE OF enabled ON espf.event_types
  FOR EACH STATEMENT EXECUTE FUNCTION espf.event_types_changed();
