-- Settings of an http handler per environment (i_env): docs/handlers.md,
-- "Settings per environment", and docs/dba.md, espf.http_handler_envs.
--
-- 1. espf.http_handler_envs: one row per (handler, i_env) with the columns of
--    espf.http_handlers that an environment may override. Every column but the
--    key is nullable: NULL inherits the handler's default row ("Global"). An
--    event whose variables carry an i_env with a row here is delivered with
--    the merged settings (espf.merged_http_settings, sql/026_http_handler_envs.sql,
--    which also checks the merged settings with the rules of the default row).
--    It joins the configuration stream (sql/042_config_stream.sql).
-- 2. espf.target_states.i_env: the circuit breaker of a target is per
--    (handler, environment): null for the default row's targets. The primary
--    key (handler, url) becomes a unique key (handler, url, i_env) with nulls
--    not distinct (PostgreSQL 15).
--
-- A new table rewrites nothing; target_states holds a row per target URL (a
-- few): its new index is built at once. The ACCESS EXCLUSIVE locks are held
-- for milliseconds.
SET LOCAL lock_timeout = '5s';

CREATE TABLE espf.http_handler_envs (
  handler                 text NOT NULL REFERENCES espf.http_handlers (handler) ON UPDATE CASCADE ON DELETE CASCADE,
  i_env                   int NOT NULL,
  url                     text[],
  auth_header             text,
  auth_method             text,
  basic_auth_user         text,
  basic_auth_key          text,
  custom_auth_type        text,
  custom_auth_credentials text,
  signature_auth_key_id   text,
  signature_auth_key      text,
  request_timeout         int,
  token_rate              numeric,
  token_burstiness        int,
  max_attempts            int,
  retry_delay             numeric,
  retry_max_delay         numeric,
  ca_file                 text,
  event_names             jsonb,
  breaker_failures        int,
  probe_delay             numeric,
  probe_max_delay         numeric,
  PRIMARY KEY (handler, i_env)
);
COMMENT ON TABLE espf.http_handler_envs IS 'settings of an http handler for the events of one environment (variables.i_env); a NULL column inherits the handler''s row of espf.http_handlers';

-- As espf.http_handlers: the sender reads it (default privileges), reporting
-- reads everything but the secrets, the console may change it.
REVOKE SELECT ON espf.http_handler_envs FROM espf_reporting;
GRANT SELECT (handler, i_env, url, auth_header, auth_method, basic_auth_user, custom_auth_type, signature_auth_key_id,
              request_timeout, token_rate, token_burstiness, max_attempts, retry_delay, retry_max_delay, ca_file,
              event_names, breaker_failures, probe_delay, probe_max_delay)
  ON espf.http_handler_envs TO espf_reporting;
GRANT SELECT ON espf.http_handler_envs TO espf_sender;
GRANT INSERT, UPDATE, DELETE ON espf.http_handler_envs TO espf_console;

ALTER TABLE espf.target_states ADD COLUMN i_env int;
COMMENT ON COLUMN espf.target_states.i_env IS 'the environment whose settings (espf.http_handler_envs) the target belongs to; null: the handler''s default row';
ALTER TABLE espf.target_states DROP CONSTRAINT target_states_pkey;
ALTER TABLE espf.target_states ADD CONSTRAINT target_states_target_key UNIQUE NULLS NOT DISTINCT (handler, url, i_env);
