-- A backfill with a target (`espf backfill RULE --handler NAME`, docs/dba.md "Backfill").
--
-- espf.events.target_handler: null for every ordinary event (every enabled handler
-- subscribed to its type gets it, as before); the name of one handler for an
-- event a targeted backfill wrote: only that handler gets it (and a dispatcher
-- subscribed to its type, whose events keep the target: sql/210_dispatch.sql).
-- The route stage of espf run (src/pipeline/route.ts), the catch-up
-- (sql/450_catch_up.sql) and the waiting report (sql/500_reports.sql) honour it.
-- It is published with the rest of the row: the publications name the table
-- without a column list (sql/040_publication.sql, sql/015_shards.sql), and the
-- table-level INSERT grants of espf_capture, espf_admin and espf_sender cover it.
--
-- espf.backfills.target_handler: the target a backfill was started with (null: all
-- handlers); `--resume` keeps it.
--
-- A nullable column with no default is a change of the catalogue only: no row is
-- rewritten, the ACCESS EXCLUSIVE lock is held for milliseconds.
SET LOCAL lock_timeout = '5s';

ALTER TABLE espf.events ADD COLUMN target_handler text;
ALTER TABLE espf.backfills ADD COLUMN target_handler text;
