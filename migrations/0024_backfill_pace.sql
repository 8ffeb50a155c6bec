-- The pace of a backfill (`espf backfill RULE [--rate N | --fast]`, docs/dba.md "Backfill").
--
-- espf.backfills.pace: how the backfill was started: 'yield' (the default: it
-- paces itself by its batch latency, src/rules/backfill-pace.ts), 'rate' (at most
-- rate_rows_s rows a second) or 'fast' (batches back to back); `--resume` keeps it.
-- Null: started before this migration, resumed at the default pace ('yield').
--
-- Nullable columns with no default are a change of the catalogue only: no row is
-- rewritten; the CHECK constraints read espf.backfills (a few rows) once. The
-- ACCESS EXCLUSIVE lock is held for milliseconds.
SET LOCAL lock_timeout = '5s';

ALTER TABLE espf.backfills
  ADD COLUMN pace text CONSTRAINT backfills_pace_check CHECK (pace IN ('yield', 'rate', 'fast')),
  ADD COLUMN rate_rows_s int CONSTRAINT backfills_rate_check CHECK (rate_rows_s BETWEEN 1 AND 10000000),
  ADD CONSTRAINT backfills_pace_rate_check CHECK (CASE pace WHEN 'rate' THEN rate_rows_s IS NOT NULL ELSE rate_rows_s IS NULL END);
