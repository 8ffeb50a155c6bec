-- Captured events come with their shard_key (the generated rule functions,
-- sql/025_event_rules.sql, compute it in their INSERT): the outbox's BEFORE
-- trigger fills it only when a writer leaves it null (dispatchers, backfills,
-- an application), so a captured event costs one PL/pgSQL call, not two.
-- CREATE OR REPLACE TRIGGER holds a SHARE ROW EXCLUSIVE lock on espf.events for
-- a moment; a capture that holds a lock on it makes this give up after
-- lock_timeout (espf migrate tries again).
SET LOCAL lock_timeout = '2s';

CREATE OR REPLACE TRIGGER events_shard_key BEFORE INSERT ON espf.events
  FOR EACH ROW WHEN (NEW.shard_key IS NULL) EXECUTE FUNCTION espf.set_shard_key();
