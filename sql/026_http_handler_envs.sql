-- Settings of an http handler per environment (migrations/0025_http_handler_envs.sql;
-- docs/handlers.md, "Settings per environment"). A row of espf.http_handler_envs
-- overrides the columns it sets; a NULL column inherits the handler's default
-- row of espf.http_handlers. The rules are those of the default row
-- (espf.check_http_settings, sql/020_config_checks.sql; espf.check_breaker_settings,
-- sql/025_outage_checks.sql; the env:NAME prefix of
-- sql/022_secret_env_prefix.sql; ca_file of sql/023_ca_file_check.sql), applied
-- to the merged settings: an override of auth_method Basic whose key is
-- inherited is fine. A refusal is one line naming the column, the handler and
-- the environment, with the SQLSTATE of the rule (23514 or 23503).

-- The default row with the columns an environment's row sets.
CREATE OR REPLACE FUNCTION espf.merged_http_settings(d espf.http_handlers, e espf.http_handler_envs)
RETURNS espf.http_handlers LANGUAGE sql STABLE AS $$
  SELECT jsonb_populate_record(d, coalesce((SELECT jsonb_object_agg(j.key, j.value) FROM jsonb_each(to_jsonb(e)) j
                                              WHERE j.key NOT IN ('handler', 'i_env') AND j.value <> 'null'::jsonb), '{}'::jsonb))
$$;

-- Checks environment row `e` merged with default row `d`; `changed`: the
-- columns `e` sets anew (the env:NAME prefix and ca_file rules apply to those,
-- as on the default row). Re-raises a refusal naming the handler and i_env.
CREATE OR REPLACE FUNCTION espf.check_env_settings(d espf.http_handlers, e espf.http_handler_envs, changed text[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  m espf.http_handlers;
  col text;
  problem text;
  msg text;
  state text;
BEGIN
  BEGIN
    IF e.url IS NOT NULL AND coalesce(cardinality(e.url), 0) = 0 THEN
      PERFORM espf.refuse('espf.http_handlers.url', 'cannot be an empty list in an environment''s row: NULL inherits the default row''s URLs');
    END IF;
    m := espf.merged_http_settings(d, e);
    PERFORM espf.check_http_settings(m);
    PERFORM espf.check_breaker_settings(m);
    FOREACH col IN ARRAY changed LOOP
      IF col IN ('basic_auth_user', 'basic_auth_key', 'custom_auth_type', 'custom_auth_credentials', 'signature_auth_key_id', 'signature_auth_key') THEN
        problem := espf.env_prefix_problem(to_jsonb(e) ->> col);
      ELSIF col = 'ca_file' THEN
        problem := espf.ca_file_problem(e.ca_file);
      ELSE
        problem := NULL;
      END IF;
      IF problem IS NOT NULL THEN
        PERFORM espf.refuse('espf.http_handlers.' || col, problem);
      END IF;
    END LOOP;
  EXCEPTION WHEN check_violation OR foreign_key_violation THEN
    GET STACKED DIAGNOSTICS msg = MESSAGE_TEXT, col = COLUMN_NAME, state = RETURNED_SQLSTATE;
    RAISE EXCEPTION '%', format('espf.http_handler_envs.%s (handler %s, i_env %s): %s', coalesce(nullif(col, ''), 'handler'), e.handler, e.i_env,
                                regexp_replace(msg, '^espf\.http_handlers\.[a-z_]+: ', ''))
      USING ERRCODE = state, COLUMN = coalesce(nullif(col, ''), 'handler'), SCHEMA = 'espf', TABLE = 'http_handler_envs';
  END;
END
$$;

CREATE OR REPLACE FUNCTION espf.check_http_handler_env() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  d espf.http_handlers;
  changed text[];
BEGIN
  SELECT * INTO d FROM espf.http_handlers WHERE handler = NEW.handler;
  IF NOT FOUND THEN
    PERFORM espf.refuse('espf.http_handler_envs.handler', format('%L is not an http handler (no row of espf.http_handlers)', NEW.handler), '23503');
  END IF;
  IF NEW.i_env IS NULL OR NEW.i_env < 0 THEN
    PERFORM espf.refuse('espf.http_handler_envs.i_env', format('handler %s: %s is not an environment (an i_env >= 0)', NEW.handler, coalesce(NEW.i_env::text, 'null')));
  END IF;
  SELECT coalesce(array_agg(n.key), '{}') INTO changed FROM jsonb_each(to_jsonb(NEW)) n
   WHERE n.value <> 'null'::jsonb AND (TG_OP = 'INSERT' OR n.value IS DISTINCT FROM to_jsonb(OLD) -> n.key);
  PERFORM espf.check_env_settings(d, NEW, changed);
  RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER check_http_handler_env BEFORE INSERT OR UPDATE ON espf.http_handler_envs
  FOR EACH ROW EXECUTE FUNCTION espf.check_http_handler_env();

-- A change of the default row changes every environment's merged settings:
-- each is checked again (a change that leaves one invalid is refused, naming it).
CREATE OR REPLACE FUNCTION espf.check_http_handler_envs_merged() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  e espf.http_handler_envs;
BEGIN
  FOR e IN SELECT * FROM espf.http_handler_envs x WHERE x.handler = NEW.handler ORDER BY x.i_env LOOP
    PERFORM espf.check_env_settings(NEW, e, '{}');
  END LOOP;
  RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER check_http_handler_envs_merged AFTER UPDATE ON espf.http_handlers
  FOR EACH ROW EXECUTE FUNCTION espf.check_http_handler_envs_merged();
