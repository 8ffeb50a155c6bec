-- Shards: the handlers of an instance split by account across N `espf run`
-- processes (README "Shards", docs/scaling.md).
--
-- 1. espf.handlers.shards: into how many shards the handlers of an instance are
--    split (1: not split). The handlers of one instance share one value
--    (checked by the database, sql/020_config_checks.sql).
-- 2. espf.events.shard_key: a stable hash of the event's order key (the account,
--    else the customer, product or owner, else the event itself; the key events
--    are ordered by, src/delivery/item.ts). Shard K of N streams the rows with
--    shard_key % N = K through its own publication (a row filter), so the events
--    of one account always reach the same shard.
--
-- A trigger fills it on every insert, whatever writes the row (capture rules,
-- dispatchers, an application). Rows written before this migration keep NULL:
-- readers compute their key (espf.in_shard), so the migration does not rewrite
-- the outbox (a STORED generated column would, holding an ACCESS EXCLUSIVE lock
-- on espf.events: 47 s for 1,000,000 events on a 2-core machine, with every
-- capture waiting).

SET LOCAL lock_timeout = '5s';

ALTER TABLE espf.handlers ADD COLUMN shards int NOT NULL DEFAULT 1;

-- Self-contained (no other espf function): the stored values must never change
-- meaning. hashtextextended is the hash of PostgreSQL's hash partitioning, kept
-- stable across versions and pg_upgrade.
CREATE FUNCTION espf.shard_key(v jsonb, i_event bigint) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT (hashtextextended(CASE
           WHEN v ->> 'i_account' IS NOT NULL THEN 'a:' || (v ->> 'i_account')
           WHEN v ->> 'i_customer' IS NOT NULL THEN 'c:' || (v ->> 'i_customer')
           WHEN v ->> 'i_product' IS NOT NULL THEN 'p:' || (v ->> 'i_product')
           WHEN jsonb_typeof(v -> 'owner_type') = 'string' AND v ->> 'owner_id' IS NOT NULL
             THEN left(v ->> 'owner_type', 1) || ':' || (v ->> 'owner_id')
           ELSE 'e:' || i_event
         END, 0) & 2147483647)::int
$$;

ALTER TABLE espf.events ADD COLUMN shard_key int;

-- The same expression as espf.shard_key, written out: a call of that SQL
-- function per row is not inlined here and would cost ~25 µs per captured event
-- (measured: 200,000 inserts 3.5–5.9 s bare, +0.1 s with this trigger, +5 s with
-- the call). test/shards.test.ts checks that both agree.
CREATE FUNCTION espf.set_shard_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.shard_key := (hashtextextended(CASE
           WHEN NEW.variables ->> 'i_account' IS NOT NULL THEN 'a:' || (NEW.variables ->> 'i_account')
           WHEN NEW.variables ->> 'i_customer' IS NOT NULL THEN 'c:' || (NEW.variables ->> 'i_customer')
           WHEN NEW.variables ->> 'i_product' IS NOT NULL THEN 'p:' || (NEW.variables ->> 'i_product')
           WHEN jsonb_typeof(NEW.variables -> 'owner_type') = 'string' AND NEW.variables ->> 'owner_id' IS NOT NULL
             THEN left(NEW.variables ->> 'owner_type', 1) || ':' || (NEW.variables ->> 'owner_id')
           ELSE 'e:' || NEW.i_event
         END, 0) & 2147483647)::int;
  RETURN NEW;
END
$$;
CREATE TRIGGER events_shard_key BEFORE INSERT ON espf.events
  FOR EACH ROW EXECUTE FUNCTION espf.set_shard_key();

-- 3. espf.shard_progress: how far each shard's stream has processed (the
--    heartbeat of a shard process, sql/450_catch_up.sql). A shard whose slot is
--    made (its first start, a slot lost in a failover) catches up its own events
--    from there; the row of espf.instances says it only for a process that
--    served the whole instance.
CREATE TABLE espf.shard_progress (
  instance         text NOT NULL,
  shard            int NOT NULL,
  shards           int NOT NULL,
  processed_until  timestamptz,          -- every transaction committed before this had been processed by the shard
  mark_at          timestamptz,          -- as in espf.instances
  mark_lsn         pg_lsn,
  streamed_at      timestamptz,          -- its last heartbeat while it streamed its slot
  PRIMARY KEY (instance, shards, shard)
);
GRANT INSERT, UPDATE ON espf.shard_progress TO espf_sender;

-- 4. espf.shard_changes: a change of an instance's number of shards under way
--    (`espf shards plan`, then `espf shards switch`, README "Shards"): the slots
--    of the new shards exist since before switch_lsn; the switch waits until
--    every old shard has processed past it and stopped.
CREATE TABLE espf.shard_changes (
  instance     text PRIMARY KEY,
  shards_from  int NOT NULL,
  shards_to    int NOT NULL,
  switch_lsn   pg_lsn NOT NULL,
  planned_at   timestamptz NOT NULL DEFAULT now()
);
