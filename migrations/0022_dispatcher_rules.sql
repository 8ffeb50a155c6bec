-- Dispatcher rules as rows (docs/dba.md, "espf.dispatcher_rules"): each row of
-- espf.dispatcher_rules gets the SQL query that fans its source event type out
-- (over any tables, the operator's own schema included), compiled and checked
-- when the row is written (sql/200_dispatchers.sql). Before, a row named one of
-- the views of sql/200_dispatchers.sql (view_name).
--
-- A row that named a view becomes a query over that view, so that a dispatcher
-- a DBA pointed at a view of their own keeps producing what it produced; the
-- built-in dispatchers' rows are then replaced by their own queries by
-- sql/200_dispatchers.sql, which ships them (shipped_query: the query espf
-- migrate last installed; a built-in row whose query differs from it was
-- changed by a DBA and is kept).
--
-- espf.dispatcher_rules holds a handful of rows: the statements below hold its
-- lock for a moment only.
SET LOCAL lock_timeout = '2s';

ALTER TABLE espf.dispatcher_rules
  ADD COLUMN query text,
  ADD COLUMN shipped_query text;

UPDATE espf.dispatcher_rules
   SET query = format('SELECT v.event_type, v.i_env, (v.variables ->> ''i_account'')::bigint AS i_account, v.variables FROM espf.%I v WHERE v.source_i_event = source.i_event',
                      view_name);

ALTER TABLE espf.dispatcher_rules
  ALTER COLUMN query SET NOT NULL,
  DROP COLUMN view_name;
