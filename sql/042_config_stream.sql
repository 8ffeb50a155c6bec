-- How a configuration change reaches every running espf run at its commit
-- position (docs/replication.md, "How configuration changes reach espf run").
--
-- Every transaction that changes a row routing or delivery reads (the tables
-- below) ends with one transactional logical message, prefix espf_config,
-- carrying the new version and the whole configuration as it commits. The
-- message is decoded inside its transaction, so it comes through every slot
-- (every instance, every shard: messages are not filtered by a publication)
-- exactly at the transaction's place in commit order: the route stage applies
-- it before the events that commit after it (src/pipeline/route.ts).

-- The configuration of every instance as espf run reads it (src/config/snapshot.ts):
-- one object per handler with its subscribed types, its coalesced types, its
-- espf.http_handlers row, the merged settings of each environment with a row of
-- espf.http_handler_envs (by i_env; sql/026_http_handler_envs.sql) and its
-- request steps.
CREATE OR REPLACE FUNCTION espf.config_document() RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT coalesce(jsonb_agg(jsonb_build_object(
           'name', h.name, 'kind', h.kind, 'enabled', h.enabled, 'instance', h.instance,
           'types', coalesce((SELECT jsonb_agg(s.event_type ORDER BY s.event_type)
                                FROM espf.subscriptions s WHERE s.handler = h.name), '[]'::jsonb),
           'coalesce', coalesce((SELECT jsonb_agg(s.event_type ORDER BY s.event_type)
                                   FROM espf.subscriptions s JOIN espf.event_types t ON t.name = s.event_type
                                  WHERE s.handler = h.name AND t."coalesce"), '[]'::jsonb),
           'http', (SELECT to_jsonb(x) - 'handler' FROM espf.http_handlers x WHERE x.handler = h.name),
           'envs', (SELECT jsonb_object_agg(e.i_env::text, to_jsonb(espf.merged_http_settings(x, e)) - 'handler' ORDER BY e.i_env)
                      FROM espf.http_handlers x JOIN espf.http_handler_envs e ON e.handler = x.handler WHERE x.handler = h.name),
           'steps', (SELECT jsonb_agg(to_jsonb(st) ORDER BY st.event_type, st.step) FROM espf.steps_of(ARRAY[h.name]) st)
         ) ORDER BY h.name), '[]'::jsonb)
    FROM espf.handlers h
$$;

-- The version and the configuration in one snapshot: what espf run starts from.
CREATE OR REPLACE FUNCTION espf.config_in_force(OUT version bigint, OUT handlers jsonb)
LANGUAGE sql STABLE AS $$
  SELECT v.version, espf.config_document() FROM espf.config_version v
$$;

-- Fires as a configuration transaction commits (a deferred constraint
-- trigger), once per transaction: the first firing takes the row lock of
-- espf.config_version (a concurrent configuration commit waits here until
-- this one has committed), then, in a new statement, which in READ COMMITTED
-- sees every configuration commit before it, writes the message. Message
-- order is commit order, and each carries exactly the configuration of its
-- commit. SECURITY DEFINER: whoever may change configuration rows need not be
-- granted espf.config_version nor pg_logical_emit_message.
-- A transaction that sets these triggers IMMEDIATE (SET CONSTRAINTS) notes its
-- changes when they fire; a change it makes after that is noted by the next change.
CREATE OR REPLACE FUNCTION espf.note_config_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v bigint;
BEGIN
  IF current_setting('espf.config_noted', true) = 'on' THEN
    RETURN NULL;
  END IF;
  UPDATE espf.config_version SET version = version + 1 RETURNING version INTO v;
  PERFORM set_config('espf.config_noted', 'on', true);
  PERFORM pg_logical_emit_message(true, 'espf_config',
            jsonb_build_object('version', v, 'handlers', espf.config_document())::text);
  RETURN NULL;
END
$$;
REVOKE EXECUTE ON FUNCTION espf.note_config_change() FROM PUBLIC, espf_sender;

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['handlers', 'http_handlers', 'http_handler_envs', 'subscriptions', 'event_types', 'http_steps'] LOOP
    EXECUTE format('DROP TRIGGER IF EXISTS note_config_change ON espf.%I', t);
    EXECUTE format('CREATE CONSTRAINT TRIGGER note_config_change AFTER INSERT OR UPDATE OR DELETE ON espf.%I
                      DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION espf.note_config_change()', t);
  END LOOP;
END
$$;
