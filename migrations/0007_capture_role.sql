-- The billing application writes billing tables; with capture on, its writes
-- fire the capture triggers, which insert into espf.events as that role.
-- espf_capture holds exactly that: grant it to the roles that write billing.
--   GRANT espf_capture TO billing_app;
-- (SIM card and service attribute capture also lock the owning account or
-- customer row, which a role that writes billing already may do.)
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'espf_capture') THEN
    BEGIN
      CREATE ROLE espf_capture NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;  -- another database's migrate created it meanwhile
    END;
  END IF;
END
$$;
COMMENT ON ROLE espf_capture IS 'espf: roles that write billing tables while capture is on (insert events into the outbox)';

GRANT USAGE ON SCHEMA espf TO espf_capture;
GRANT INSERT ON espf.events TO espf_capture;
GRANT USAGE ON SEQUENCE espf.events_i_event_seq TO espf_capture;
