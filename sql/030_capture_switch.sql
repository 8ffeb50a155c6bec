-- Capture is switched per event type: the rules (espf.event_rules, compiled by
-- sql/025_event_rules.sql) of an enabled type have their triggers, those of a
-- disabled type have none, so a disabled type costs the billing write path
-- nothing; an enabled rule whose WHEN clause is false costs a comparison.
--
-- One row per rule trigger: its type, table, trigger and whether it is on.
CREATE OR REPLACE VIEW espf.capture_triggers AS
SELECT r.event_type,
       t.tgrelid::regclass AS table_name,
       t.tgname::text      AS trigger_name,
       t.tgenabled <> 'D'  AS active,
       r.name              AS rule
  FROM espf.event_rules r
  JOIN pg_trigger t ON t.tgrelid = r.source AND t.tgname = espf.rule_trigger_name(r.name);

-- Makes the capture triggers match espf.event_types.enabled: a rule of an
-- enabled type is compiled (its trigger created, or switched back on), a rule
-- of a disabled type has its trigger and function dropped. CREATE and DROP
-- TRIGGER take a SHARE ROW EXCLUSIVE lock on the rule's table: they wait for
-- running writes to that table, briefly. A rule that no longer compiles stops
-- its type from being enabled, with a message that names it.
CREATE OR REPLACE FUNCTION espf.sync_capture() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r record;
BEGIN
  FOR r IN
    SELECT e AS rule, coalesce(t.enabled, false) AS wanted, g.tgenabled
      FROM espf.event_rules e
      LEFT JOIN espf.event_types t ON t.name = e.event_type
      LEFT JOIN pg_trigger g ON g.tgrelid = e.source AND g.tgname = espf.rule_trigger_name(e.name)
     WHERE coalesce(t.enabled, false) IS DISTINCT FROM (g.tgenabled IS NOT NULL AND g.tgenabled <> 'D')
        OR (NOT coalesce(t.enabled, false) AND g.tgenabled IS NOT NULL)
     ORDER BY e.source::oid, e.name
  LOOP
    IF r.wanted AND r.tgenabled IS NOT NULL THEN
      EXECUTE format('ALTER TABLE %s ENABLE TRIGGER %I', (r.rule).source, espf.rule_trigger_name((r.rule).name));
    ELSIF r.wanted THEN
      PERFORM espf.compile_rule(r.rule);
    ELSE
      PERFORM espf.drop_rule_objects((r.rule).name, (r.rule).source);
    END IF;
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
