-- Two espf databases on one PostgreSQL server, and the catch-up a shard owes
-- (docs/replication.md, "Slot names"; docs/operations.md, "Several espf
-- databases on one server").
--
-- 1. espf.slots: the replication slot name each instance (shard) of this
--    database uses. Slot names are per server, not per database: the name is
--    chosen once, at the first start (espf.claim_slot_name, sql/015_shards.sql),
--    and kept here, so that it follows the database through a failover and a
--    second database on the server never takes it. A slot that exists when
--    this migration runs keeps its name (the rule picks a slot of this
--    database before anything else).
-- 2. espf.shard_progress.owed_from: a shard process whose slot was made anew
--    owes a catch-up from there until its catch-up commits, as the whole
--    instance's espf.handler_coverage says it (espf.slot_missing).
-- 3. An exact bound for the catch-up where it can be known (sql/450_catch_up.sql,
--    espf.open_since): mark_from, noted with each heartbeat's mark, is the
--    start of the oldest transaction of the database open at the mark;
--    processed_from goes with processed_until (every event created before it
--    had been processed), covered_from with covered_until. Null: not known,
--    the catch-up looks back espf.catch_up_look_back instead.
-- New tables and nullable columns without a default rewrite nothing.
SET LOCAL lock_timeout = '5s';

CREATE TABLE espf.slots (
  instance   text NOT NULL,
  shard      int NOT NULL,
  shards     int NOT NULL,
  slot_name  text NOT NULL CONSTRAINT slots_slot_name_key UNIQUE,
  claimed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (instance, shards, shard)
);
GRANT INSERT ON espf.slots TO espf_sender;  -- SELECT: the default privileges of 0006

ALTER TABLE espf.shard_progress ADD COLUMN owed_from timestamptz;
ALTER TABLE espf.instances ADD COLUMN mark_from timestamptz, ADD COLUMN processed_from timestamptz;
ALTER TABLE espf.shard_progress ADD COLUMN mark_from timestamptz, ADD COLUMN processed_from timestamptz;
ALTER TABLE espf.handler_coverage ADD COLUMN covered_from timestamptz;
