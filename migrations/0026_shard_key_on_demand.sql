-- The trigger events_shard_key (migrations/0013_shards.sql) only while shards
-- are in use (docs/scaling.md, "Shards"; sql/015_shards.sql): it fills
-- espf.events.shard_key, which only the publications of shards read, and its
-- PL/pgSQL call cost each captured event about 7 µs of a one-row billing
-- transaction (docs/benchmarks.md, "WAL records per event"). Dropped here where
-- no handler has more than one shard, no change of shards is planned and no
-- shard's publication exists; from now on setting shards above 1 and
-- espf.shard_publication make it again, before any shard's publication or slot.
-- Rows written without it keep a null shard_key, which readers compute
-- (espf.in_shard), as for rows written before 0013.
--
-- Its own transaction, locking espf.events alone (ACCESS EXCLUSIVE, for
-- milliseconds): a billing write that holds a billing table and then inserts
-- an event waits for it, and it waits for no billing table.
SET LOCAL lock_timeout = '5s';

DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM espf.handlers h WHERE h.shards > 1)
     AND NOT EXISTS (SELECT FROM espf.shard_changes)
     AND NOT EXISTS (SELECT FROM pg_publication p WHERE p.pubname ~ '^espf_events_[0-9]+of[0-9]+$') THEN
    DROP TRIGGER IF EXISTS events_shard_key ON espf.events;
  END IF;
END
$$;
