-- Long receiver outages (README "Guarantees", docs/operations.md "A receiver is down").
--
-- 1. A circuit breaker per target URL of an http handler: after
--    `breaker_failures` consecutive failed attempts (connection error, timeout,
--    5xx, 408, 429) the URL is "down"; its deliveries are no longer retried one
--    by one: a single probe request (the oldest waiting delivery) goes after
--    `probe_delay` seconds, then at intervals growing up to `probe_max_delay`.
--    The checks of these columns are in sql/025_outage_checks.sql.
-- 2. espf.target_states: the breaker state of each target, written by the
--    instance that serves the handler when the state changes (and on each
--    probe), read by `espf status`, the failure e-mail and operators.
--
-- Adding columns with constant defaults only touches the catalogue, but it takes
-- an ACCESS EXCLUSIVE lock on espf.http_handlers: do not wait behind a long
-- transaction for it (espf migrate can be run again).
SET LOCAL lock_timeout = '5s';

ALTER TABLE espf.http_handlers
  ADD COLUMN breaker_failures int NOT NULL DEFAULT 10,
  ADD COLUMN probe_delay numeric NOT NULL DEFAULT 5,
  ADD COLUMN probe_max_delay numeric NOT NULL DEFAULT 300;

COMMENT ON COLUMN espf.http_handlers.breaker_failures IS 'consecutive failed attempts (connection error, timeout, 5xx, 408, 429) to one URL before it is considered down and only probed';
COMMENT ON COLUMN espf.http_handlers.probe_delay IS 'seconds from a URL going down to the first probe request; later probes wait twice as long each time';
COMMENT ON COLUMN espf.http_handlers.probe_max_delay IS 'the longest wait, in seconds, between two probe requests to a URL that is down';

CREATE TABLE espf.target_states (
  handler          text NOT NULL REFERENCES espf.handlers ON UPDATE CASCADE ON DELETE CASCADE,
  url              text NOT NULL,           -- as in espf.http_handlers.url (credentials in it are not stored: see the sender)
  instance         text NOT NULL,           -- the espf run instance that observed it
  up               boolean NOT NULL,
  since            timestamptz NOT NULL,    -- when it last changed state
  failures         int NOT NULL DEFAULT 0,  -- consecutive failed attempts when it went down
  probes           int NOT NULL DEFAULT 0,  -- probe requests sent since it went down
  next_probe_at    timestamptz,             -- while down: when the next probe goes
  last_http_status int,
  last_error       text,
  updated_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (handler, url)
);
COMMENT ON TABLE espf.target_states IS 'circuit breaker state of each target URL of an http handler (up, or down and only probed), written by espf run';

GRANT INSERT, UPDATE, DELETE ON espf.target_states TO espf_sender;
GRANT SELECT ON espf.target_states TO espf_sender, espf_reporting;
GRANT SELECT (breaker_failures, probe_delay, probe_max_delay) ON espf.http_handlers TO espf_reporting;
