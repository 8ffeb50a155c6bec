-- First run without surprises (README "Guarantees", docs/dba.md).
--
-- 1. espf.http_handlers.event_names: the names a handler's receiver knows event
--    types by ({"Account/ID/Changed": "Account/Id/Changed"}); the request body
--    carries the mapped name. Checked by espf.check_http_handler (sql/020).
-- 2. What `espf run` needs to deliver events that no replication slot carried
--    to a handler (committed before its instance first streamed, or while the
--    handler waited on an instance that was not running): when a handler was
--    enabled and subscribed, which instance has streamed when, and whose slot
--    covers each handler. The catch-up itself is sql/450_catch_up.sql.

-- Short locks only: a busy billing database must not queue behind this migration.
SET LOCAL lock_timeout = '5s';

ALTER TABLE espf.http_handlers ADD COLUMN event_names jsonb NOT NULL DEFAULT '{}';

-- When the handler was last enabled (set by a trigger, sql/450_catch_up.sql).
-- Handlers enabled before this migration: '-infinity' ("since before espf kept it").
ALTER TABLE espf.handlers ADD COLUMN enabled_at timestamptz;
UPDATE espf.handlers SET enabled_at = '-infinity' WHERE enabled;

-- When the subscription was made. Subscriptions older than this migration: '-infinity'.
ALTER TABLE espf.subscriptions ADD COLUMN created_at timestamptz NOT NULL DEFAULT '-infinity';
ALTER TABLE espf.subscriptions ALTER COLUMN created_at SET DEFAULT now();

-- One row per `espf run` instance that has started: written by the instance
-- (its start, its heartbeat, its graceful stop), read by reports and /healthz.
CREATE TABLE espf.instances (
  name             text PRIMARY KEY,
  started_at       timestamptz,          -- its last start (and catch-up)
  streamed_at      timestamptz,          -- its last heartbeat while it streamed its slot
  stopped_at       timestamptz,          -- its last graceful stop
  processed_until  timestamptz,          -- every transaction committed before this had been processed by its stream
  mark_at          timestamptz,          -- a heartbeat's time and WAL position: once the stream is durable
  mark_lsn         pg_lsn,               --   past mark_lsn, processed_until becomes mark_at
  caught_up_at     timestamptz,          -- its last catch-up
  caught_up_events bigint NOT NULL DEFAULT 0,  -- (event, handler) pairs its last catch-up recorded or dispatched
  host             text,
  pid              int
);

-- Which instance's slot delivers each handler's events. A handler has a row
-- once an instance caught it up (or served it while streaming); moving the
-- handler to another instance clears served_by and keeps in covered_until how
-- far the old instance had processed: the new one catches up from there.
CREATE TABLE espf.handler_coverage (
  handler       text PRIMARY KEY REFERENCES espf.handlers ON UPDATE CASCADE ON DELETE CASCADE,
  served_by     text,            -- the instance whose slot delivers its events, since served_since
  served_since  timestamptz,
  covered_until timestamptz      -- after a move: events created before this were the previous instance's
);

-- An existing installation: a handler whose instance already has its slot in
-- this database is served by it (nothing to catch up on the first start after
-- the upgrade); a handler whose instance never streamed is caught up in full.
INSERT INTO espf.handler_coverage (handler, served_by, served_since)
SELECT h.name, h.instance, now()
  FROM espf.handlers h
 WHERE EXISTS (SELECT 1 FROM pg_replication_slots s
                WHERE s.slot_name = 'espf_' || h.instance AND s.database = current_database());

GRANT INSERT, UPDATE ON espf.instances, espf.handler_coverage TO espf_sender;
GRANT SELECT (event_names) ON espf.http_handlers TO espf_reporting;
