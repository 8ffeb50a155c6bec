-- Least privilege (docs/security.md): two NOLOGIN group roles.
--
--   espf_sender     what `espf run` needs. The login role that runs it must also
--                   have the REPLICATION attribute, which is not inherited through
--                   a group, so it is created by the DBA:
--                     CREATE ROLE espf_run LOGIN REPLICATION PASSWORD '…' IN ROLE espf_sender;
--   espf_reporting  read-only: the report views, the outbox, the results, the
--                   configuration without its secrets, and the billing tables.
--
-- Roles belong to the cluster, not the database: they are created only when
-- missing (a second database of the same cluster migrates without error).
-- Objects the migrating role creates later in schema espf (the views and
-- functions of sql/, which run after the migrations on a fresh install, and
-- later migrations) get the same grants through ALTER DEFAULT PRIVILEGES, so
-- `espf migrate` must always run as the same role (the owner of schema espf).

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'espf_sender') THEN
    BEGIN
      CREATE ROLE espf_sender NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;  -- another database's migrate created it meanwhile
    END;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'espf_reporting') THEN
    BEGIN
      CREATE ROLE espf_reporting NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
  END IF;
END
$$;

COMMENT ON ROLE espf_sender IS 'espf run: read configuration and events, write delivery results; members that log in also need REPLICATION';
COMMENT ON ROLE espf_reporting IS 'espf: read-only reporting (report views, results, billing tables; no secrets)';

-- ── espf_sender ─────────────────────────────────────────────────────────────
GRANT USAGE ON SCHEMA espf, billing TO espf_sender;

-- Configuration, the outbox and the results: `espf run` reads all of espf
-- (espf.migrations too: it checks the schema is migrated).
GRANT SELECT ON ALL TABLES IN SCHEMA espf TO espf_sender;
ALTER DEFAULT PRIVILEGES IN SCHEMA espf GRANT SELECT ON TABLES TO espf_sender;

-- Dispatchers insert the events they produce (espf.dispatch) and claim their
-- source events in espf.event_deliveries.
GRANT INSERT ON espf.events TO espf_sender;
GRANT USAGE ON SEQUENCE espf.events_i_event_seq TO espf_sender;

-- Results (espf.record_deliveries, espf.take_requeued; the status API writes
-- account statuses).
GRANT INSERT, UPDATE ON espf.event_deliveries, espf.account_provisioning_statuses TO espf_sender;

-- Maintenance (sql/600_maintenance.sql): purge deletes finished deliveries, old
-- events and old failure notices in batches; reclaim updates deliveries; the
-- gate and the digest update espf.maintenance_runs and insert failure notices.
GRANT DELETE ON espf.event_deliveries, espf.events, espf.failure_notices TO espf_sender;
-- The purge batches lock their rows (SELECT … FOR UPDATE SKIP LOCKED), which needs
-- UPDATE on at least one column: a timestamp column, never the event itself.
GRANT UPDATE (created_at) ON espf.events TO espf_sender;
GRANT UPDATE (notified_at) ON espf.failure_notices TO espf_sender;
GRANT INSERT ON espf.failure_notices TO espf_sender;
GRANT UPDATE ON espf.maintenance_runs TO espf_sender;

-- The functions it calls (espf.dispatch, espf.record_deliveries,
-- espf.waiting_deliveries, espf.take_requeued, the maintenance functions). They
-- run with the caller's rights, so the table grants above are what they need.
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA espf TO espf_sender;
ALTER DEFAULT PRIVILEGES IN SCHEMA espf GRANT EXECUTE ON FUNCTIONS TO espf_sender;
-- The heartbeat through the slot (a REPLICATION role may call it anyway).
-- (Its signature differs between PostgreSQL versions: grant every text form.)
DO $$
DECLARE f regprocedure;
BEGIN
  FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
            WHERE p.proname = 'pg_logical_emit_message' AND p.pronamespace = 'pg_catalog'::regnamespace
              AND p.proargtypes[2] = 'text'::regtype
  LOOP
    EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO espf_sender', f);
  END LOOP;
END
$$;

-- Billing: the dispatcher views (espf.customer_to_accounts, …) read billing
-- tables with their owner's rights, so the sender needs no billing grant for
-- them; the status API checks that the account exists.
GRANT SELECT ON billing.account TO espf_sender;

-- ── espf_reporting ──────────────────────────────────────────────────────────
GRANT USAGE ON SCHEMA espf, billing TO espf_reporting;
GRANT SELECT ON ALL TABLES IN SCHEMA espf, billing TO espf_reporting;
ALTER DEFAULT PRIVILEGES IN SCHEMA espf GRANT SELECT ON TABLES TO espf_reporting;
ALTER DEFAULT PRIVILEGES IN SCHEMA billing GRANT SELECT ON TABLES TO espf_reporting;

-- No secrets: the keys of espf.http_handlers, the status API token and the SMTP
-- URL (which may carry a password) are not readable by reporting.
REVOKE SELECT ON espf.http_handlers, espf.status_api, espf.notifications FROM espf_reporting;
GRANT SELECT (handler, url, async_mode, auth_header, auth_method, basic_auth_user, custom_auth_type,
              signature_auth_key_id, max_wait_time, request_timeout, token_rate, token_burstiness,
              max_attempts, retry_delay, retry_max_delay, ca_file)
  ON espf.http_handlers TO espf_reporting;
GRANT SELECT (id, enabled, mail_from, recipients, digest_interval, unreachable_after)
  ON espf.notifications TO espf_reporting;
GRANT SELECT (id, enabled, updated_at) ON espf.status_api TO espf_reporting;
