-- Operations (docs/maintenance.md, docs/dba.md): failure e-mails and maintenance.
-- Configuration rows (one row each) and the fleet-wide gate of maintenance passes.
-- The rows are checked by a validating trigger in sql/600_maintenance.sql.

-- Failure e-mails: off by default.
CREATE TABLE espf.notifications (
  id                boolean PRIMARY KEY DEFAULT true
    CONSTRAINT notifications_one_row CHECK (id),
  enabled           boolean NOT NULL DEFAULT false,
  smtp_url          text,                       -- smtp://[user:password@]host[:port] or smtps://…, or env:NAME
  mail_from         text,
  recipients        text[] NOT NULL DEFAULT '{}',
  digest_interval   interval NOT NULL DEFAULT '15 minutes',  -- at most one e-mail per interval
  unreachable_after interval NOT NULL DEFAULT '5 minutes'    -- a target failing that long is reported
);
INSERT INTO espf.notifications DEFAULT VALUES;

-- Maintenance settings.
CREATE TABLE espf.maintenance (
  id                  boolean PRIMARY KEY DEFAULT true
    CONSTRAINT maintenance_one_row CHECK (id),
  pass_interval       interval NOT NULL DEFAULT '1 minute',  -- purge, reclaim and slot lag run at most this often (fleet-wide)
  retention           interval NOT NULL DEFAULT '7 days',    -- finished deliveries and their events are kept this long
  purge_batch         int NOT NULL DEFAULT 5000,             -- rows per DELETE (one short transaction each)
  slot_lag_warn_bytes bigint NOT NULL DEFAULT 1073741824     -- WAL retained by an espf_% slot before a warning (1 GiB)
);
INSERT INTO espf.maintenance DEFAULT VALUES;

-- The gate: a pass of a task runs only on the instance whose
--   UPDATE … SET last_run_at = now() WHERE task = … AND last_run_at <= now() - <interval> RETURNING
-- returns a row, so several `espf run` instances never run the same pass twice.
CREATE TABLE espf.maintenance_runs (
  task             text PRIMARY KEY
    CONSTRAINT maintenance_runs_task_check CHECK (task IN ('purge', 'reclaim', 'slot_lag', 'digest')),
  last_run_at      timestamptz NOT NULL DEFAULT '-infinity',
  last_instance    text,               -- the instance that ran the last pass
  last_notified_at timestamptz,        -- digest: when the last e-mail went out
  last_result      jsonb               -- what the last pass did (counts, lags), for operators
);
INSERT INTO espf.maintenance_runs (task) VALUES ('purge'), ('reclaim'), ('slot_lag'), ('digest');

-- Failures already reported by e-mail (a delivery that fails again after a resend
-- has another finished_at and is reported again). Purged with the deliveries.
CREATE TABLE espf.failure_notices (
  i_event     bigint NOT NULL,
  handler     text NOT NULL,
  finished_at timestamptz NOT NULL,
  notified_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (i_event, handler, finished_at)
);
CREATE INDEX failure_notices_notified_at_idx ON espf.failure_notices (notified_at);

