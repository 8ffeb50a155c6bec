-- Shards (migrations/0013_shards.sql, README "Shards", docs/scaling.md).
-- Shard K (0 … N-1) of an instance split into N streams its own slot
-- espf_<instance>_<K>of<N> through the publication espf_events_<K>of<N>, whose
-- row filter keeps the events with shard_key % N = K. An instance with one
-- shard streams espf_<instance> through espf_events, as before.

-- Slot names (docs/replication.md, "Slot names"). A slot name is per server,
-- not per database, so two espf databases on one server (staging beside
-- production, two brands) cannot both use espf_main. The name of shard K of N
-- of an instance is, in this order:
--   1. the one recorded in espf.slots (migrations/0019_slot_names.sql) by its
--      first start: it follows the database through a failover, and a DBA may
--      set it;
--   2. the classic name espf_<instance> (espf_<instance>_<K>of<N>) unless a
--      slot of that name belongs to another database of the server: a slot
--      this database made before names were recorded keeps its name, and a
--      lone database keeps the name the documentation shows;
--   3. else the classic name followed by _db<oid of this database>: unique on
--      the server, and kept when the database is renamed.
-- The classic name of shard K of N.
CREATE OR REPLACE FUNCTION espf.classic_slot_name(inst text, shard int, shards int) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN shards <= 1 THEN 'espf_' || inst ELSE format('espf_%s_%sof%s', inst, shard, shards) END
$$;

-- The slot of shard K of N of an instance (above), without recording it.
CREATE OR REPLACE FUNCTION espf.shard_slot(inst text, shard int, shards int) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT coalesce(
           (SELECT s.slot_name FROM espf.slots s
             WHERE s.instance = inst AND s.shards = greatest(shard_slot.shards, 1)
               AND s.shard = CASE WHEN shard_slot.shards <= 1 THEN 0 ELSE shard_slot.shard END),
           (SELECT CASE WHEN EXISTS (SELECT FROM pg_replication_slots r
                                      WHERE r.slot_name = c.name AND r.database IS DISTINCT FROM current_database())
                        THEN c.name || '_db' || (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
                        ELSE c.name END
              FROM (SELECT espf.classic_slot_name(inst, shard, shards) AS name) c))
$$;

-- The slot of shard K of N, recorded in espf.slots if it was not (espf run at
-- start, espf shards plan): from then on the name no longer depends on which
-- slots the server has.
CREATE OR REPLACE FUNCTION espf.claim_slot_name(inst text, shard int, shards int) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  name text := espf.shard_slot(inst, shard, shards);
BEGIN
  -- Not a name a slot of another database has (espf run refuses it, changing nothing).
  IF NOT EXISTS (SELECT FROM pg_replication_slots r WHERE r.slot_name = name AND r.database IS DISTINCT FROM current_database()) THEN
    INSERT INTO espf.slots (instance, shard, shards, slot_name)
    VALUES (inst, CASE WHEN shards <= 1 THEN 0 ELSE shard END, greatest(shards, 1), name)
    ON CONFLICT DO NOTHING;
  END IF;
  RETURN espf.shard_slot(inst, shard, shards);
END
$$;

-- Whether an event belongs to shard K of N. Events written before
-- migrations/0013_shards.sql have no shard_key: it is computed here.
CREATE OR REPLACE FUNCTION espf.in_shard(e espf.events, shard int, shards int) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT shards <= 1 OR coalesce(e.shard_key, espf.shard_key(e.variables, e.i_event)) % shards = shard
$$;

-- The trigger events_shard_key (espf.set_shard_key, migrations/0013_shards.sql)
-- fills espf.events.shard_key on insert, which the row filter of a shard's
-- publication reads. It is needed while shards are in use: a handler with
-- shards > 1, a publication of a shard, or a planned change of shards
-- (migrations/0026_shard_key_on_demand.sql dropped it where none was: with no
-- shard its PL/pgSQL call cost a captured event about 7 µs of a one-row
-- billing transaction, docs/benchmarks.md, "WAL records per event"). Rows
-- written without it keep a null shard_key, which readers compute
-- (espf.in_shard). It is made before any shard's publication or slot: in the
-- transaction that sets shards > 1 (check_handler_shards, below) and in
-- espf.shard_publication. Making it waits for the transactions that wrote to
-- espf.events (SHARE ROW EXCLUSIVE), so every event a shard's slot can carry
-- has its shard_key. espf migrate neither makes nor drops it: its sql/
-- transaction also replaces triggers of billing tables, and locking
-- espf.events there could deadlock with a billing write that holds a billing
-- table and then inserts an event.
DROP FUNCTION IF EXISTS espf.shard_keys_needed(); -- used by no one since migrations/0026 decides once

CREATE OR REPLACE FUNCTION espf.has_shard_key_trigger() RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
  SELECT EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = 'espf.events'::regclass AND t.tgname = 'events_shard_key')
$$;

-- Makes the trigger if it is missing. SECURITY DEFINER: whoever sets
-- espf.handlers.shards need not own espf.events. Its lock on espf.events
-- (SHARE ROW EXCLUSIVE, held to the end of the caller's transaction) waits 2 s
-- at most: behind a long billing transaction it fails (55P03, try again)
-- instead of queueing every capture behind it.
CREATE OR REPLACE FUNCTION espf.ensure_shard_key_trigger() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET lock_timeout = '2s' AS $$
BEGIN
  IF NOT espf.has_shard_key_trigger() THEN
    CREATE OR REPLACE TRIGGER events_shard_key BEFORE INSERT ON espf.events
      FOR EACH ROW EXECUTE FUNCTION espf.set_shard_key();
  END IF;
END
$$;
GRANT EXECUTE ON FUNCTION espf.ensure_shard_key_trigger() TO PUBLIC;

-- The publication of shard K of N, made on first use. SECURITY DEFINER: the
-- role of espf run (a member of espf_sender) does not own espf.events, which a
-- publication of the table requires. Returns its name.
CREATE OR REPLACE FUNCTION espf.shard_publication(shard int, shards int) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  pub text;
BEGIN
  IF shards IS NULL OR shards < 1 OR shards > 64 OR shard IS NULL OR shard < 0 OR shard >= shards THEN
    RAISE EXCEPTION 'shard %: not a shard of % (0 … shards - 1, shards 1 … 64)', shard, shards USING ERRCODE = '22023';
  END IF;
  IF shards = 1 THEN
    RETURN 'espf_events';
  END IF;
  pub := format('espf_events_%sof%s', shard, shards);
  PERFORM espf.ensure_shard_key_trigger(); -- before the publication and the shard's slot
  IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = pub) THEN
    BEGIN
      EXECUTE format('CREATE PUBLICATION %I FOR TABLE espf.events WHERE (shard_key %% %s = %s) WITH (publish = %L)',
                     pub, shards, shard, 'insert');
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
      NULL; -- made at the same moment by another process
    END;
  END IF;
  RETURN pub;
END
$$;
REVOKE ALL ON FUNCTION espf.shard_publication(int, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION espf.shard_publication(int, int) TO espf_sender;

-- espf.handlers.shards: 1 … 64, and one value for all the handlers of an
-- instance (they share its slots). The second rule is checked at commit, so
-- `UPDATE espf.handlers SET shards = 3 WHERE instance = 'hss'` passes.
CREATE OR REPLACE FUNCTION espf.check_handler_shards() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.shards IS NULL OR NEW.shards < 1 OR NEW.shards > 64 THEN
    PERFORM espf.refuse('espf.handlers.shards', format('%s is not a number of shards (1 … 64)', coalesce(NEW.shards::text, 'null')));
  END IF;
  IF NEW.shards > 1 THEN
    PERFORM espf.ensure_shard_key_trigger();
  END IF;
  RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER check_handler_shards BEFORE INSERT OR UPDATE OF shards ON espf.handlers
  FOR EACH ROW EXECUTE FUNCTION espf.check_handler_shards();

CREATE OR REPLACE FUNCTION espf.check_instance_shards() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  detail text;
BEGIN
  SELECT string_agg(format('%s: %s', h.name, h.shards), ', ' ORDER BY h.name) INTO detail
    FROM espf.handlers h
   WHERE h.instance = NEW.instance
  HAVING count(DISTINCT h.shards) > 1;
  IF detail IS NOT NULL THEN
    PERFORM espf.refuse('espf.handlers.shards', format(
      'the handlers of instance %s must have the same number of shards (%s): set them together, UPDATE espf.handlers SET shards = N WHERE instance = %L',
      NEW.instance, detail, NEW.instance));
  END IF;
  RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS check_instance_shards ON espf.handlers;
CREATE CONSTRAINT TRIGGER check_instance_shards AFTER INSERT OR UPDATE OF shards, instance ON espf.handlers
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION espf.check_instance_shards();

-- Changing the number of shards of an instance (README "Shards"): without
-- losing an event, and without two shards sending one account's events at once.
--   1. `espf shards plan <instance> <N>`: the publications and slots of the new
--      shards are made, then espf.plan_shards records the WAL position L read
--      after them: the new slots carry every commit from before L on.
--   2. The old shards run until each has processed past L (confirmed_flush_lsn
--      of its slot), then their processes are stopped.
--   3. `espf shards switch <instance>` (espf.switch_shards) checks both, sets
--      espf.handlers.shards and drops the old slots. The new shard processes
--      then stream from their slots; what the old shards recorded is skipped by
--      the replay check, what they left waiting is read back by its new shard.

-- The current number of shards of an instance, when `new_shards` is a change of
-- it; otherwise one line saying why not (22023), changing nothing.
CREATE OR REPLACE FUNCTION espf.shard_change_from(inst text, new_shards int) RETURNS int
LANGUAGE plpgsql STABLE AS $$
DECLARE
  cur int;
BEGIN
  SELECT max(h.shards) INTO cur FROM espf.handlers h WHERE h.instance = inst;
  IF cur IS NULL THEN
    RAISE EXCEPTION 'instance %: no handler is served by it (espf.handlers.instance)', inst USING ERRCODE = '22023';
  END IF;
  IF new_shards IS NULL OR new_shards < 1 OR new_shards > 64 THEN
    RAISE EXCEPTION 'instance %: % is not a number of shards (1 … 64)', inst, coalesce(new_shards::text, 'null') USING ERRCODE = '22023';
  END IF;
  IF new_shards = cur THEN
    RAISE EXCEPTION 'instance % has % % already', inst, cur, CASE WHEN cur = 1 THEN 'shard' ELSE 'shards' END USING ERRCODE = '22023';
  END IF;
  RETURN cur;
END
$$;

-- Before the slots of the new shards are made: espf.shard_change_from, and no
-- slot of a new shard that this change did not make (it would stream from
-- wherever it was left: events long delivered would come again; 55000).
CREATE OR REPLACE FUNCTION espf.check_shard_change(inst text, new_shards int) RETURNS int
LANGUAGE plpgsql STABLE AS $$
DECLARE
  cur int := espf.shard_change_from(inst, new_shards);
  stale text;
BEGIN
  SELECT string_agg(s.slot_name, ', ' ORDER BY s.slot_name) INTO stale
    FROM generate_series(0, new_shards - 1) k
    JOIN pg_replication_slots s ON s.slot_name = espf.shard_slot(inst, k, new_shards) AND s.database = current_database()
   WHERE NOT EXISTS (SELECT 1 FROM espf.shard_changes c WHERE c.instance = inst AND c.shards_to = new_shards);
  IF stale IS NOT NULL THEN
    RAISE EXCEPTION 'instance %: slot % exists already, left from an earlier run: drop it if no process streams it (SELECT pg_drop_replication_slot(''%''), …), then plan again',
      inst, stale, split_part(stale, ',', 1) USING ERRCODE = '55000';
  END IF;
  RETURN cur;
END
$$;

-- Step 1, once the slots of the new shards exist: records the switch position.
CREATE OR REPLACE FUNCTION espf.plan_shards(inst text, new_shards int) RETURNS pg_lsn
LANGUAGE plpgsql AS $$
DECLARE
  cur int := espf.shard_change_from(inst, new_shards);
  missing text;
  l pg_lsn;
BEGIN
  SELECT string_agg(espf.shard_slot(inst, k, new_shards), ', ' ORDER BY k) INTO missing
    FROM generate_series(0, new_shards - 1) k
   WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots s
                      WHERE s.slot_name = espf.shard_slot(inst, k, new_shards) AND s.database = current_database());
  IF missing IS NOT NULL THEN
    RAISE EXCEPTION 'instance %: the slots of the new shards must exist first (missing: %); espf shards plan makes them', inst, missing
      USING ERRCODE = '55000';
  END IF;
  l := pg_current_wal_insert_lsn();
  INSERT INTO espf.shard_changes AS c (instance, shards_from, shards_to, switch_lsn)
  VALUES (inst, cur, new_shards, l)
  ON CONFLICT (instance) DO UPDATE SET shards_from = excluded.shards_from, shards_to = excluded.shards_to,
         switch_lsn = excluded.switch_lsn, planned_at = now();
  RETURN l;
END
$$;

-- The planned change of an instance, locked; none: one line (55000), ending with `hint`.
CREATE OR REPLACE FUNCTION espf.planned_shard_change(inst text, hint text) RETURNS espf.shard_changes
LANGUAGE plpgsql AS $$
DECLARE
  c espf.shard_changes;
BEGIN
  SELECT * INTO c FROM espf.shard_changes WHERE instance = inst FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'instance %: no change of the number of shards is planned%', inst, hint USING ERRCODE = '55000';
  END IF;
  RETURN c;
END
$$;

-- Drops the slots of shards 0 … shards-1 of an instance that exist; returns their names.
CREATE OR REPLACE FUNCTION espf.drop_shard_slots(inst text, shards int) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
  s record;
  dropped text[] := '{}';
BEGIN
  FOR s IN
    SELECT r.slot_name::text AS slot FROM generate_series(0, shards - 1) k
      JOIN pg_replication_slots r ON r.slot_name = espf.shard_slot(inst, k, shards) AND r.database = current_database()
     ORDER BY k
  LOOP
    PERFORM pg_drop_replication_slot(s.slot);
    dropped := dropped || s.slot;
  END LOOP;
  RETURN dropped;
END
$$;

-- Step 3: refuses (55000, one line, nothing changed) while an old shard has not
-- processed past the switch position, has no slot, or still streams; else sets
-- the new number of shards and drops the old slots (last: a drop is not undone
-- by a rollback). Returns {"from", "to", "switch_lsn", "dropped"}.
CREATE OR REPLACE FUNCTION espf.switch_shards(inst text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
  c espf.shard_changes := espf.planned_shard_change(inst, format(' (espf shards plan %s N first)', inst));
  cur int;
  s record;
  what text;
  dropped text[];
BEGIN
  SELECT max(h.shards) INTO cur FROM espf.handlers h WHERE h.instance = inst;
  IF cur IS DISTINCT FROM c.shards_from THEN
    RAISE EXCEPTION 'instance %: the change was planned from % shards, the instance has % now; plan it again', inst, c.shards_from, cur
      USING ERRCODE = '55000';
  END IF;
  FOR s IN
    SELECT k, espf.shard_slot(inst, k, c.shards_from) AS slot, r.slot_name IS NOT NULL AS present,
           r.confirmed_flush_lsn AS confirmed, coalesce(r.active, false) AS active, r.active_pid
      FROM generate_series(0, c.shards_from - 1) k
      LEFT JOIN pg_replication_slots r ON r.slot_name = espf.shard_slot(inst, k, c.shards_from) AND r.database = current_database()
     ORDER BY k
  LOOP
    what := CASE WHEN c.shards_from = 1 THEN format('instance %s', inst) ELSE format('instance %s shard %s of %s', inst, s.k, c.shards_from) END;
    IF NOT s.present THEN
      RAISE EXCEPTION '%: its slot % is missing: start it (it catches up), let it pass the switch position %, stop it, then switch',
        what, s.slot, c.switch_lsn USING ERRCODE = '55000';
    END IF;
    IF s.confirmed IS NULL OR s.confirmed < c.switch_lsn THEN
      RAISE EXCEPTION '%: processed up to %, not yet the switch position %: let it run (an idle slot moves within 10 s), stop it, then switch',
        what, coalesce(s.confirmed::text, 'nothing'), c.switch_lsn USING ERRCODE = '55000';
    END IF;
    IF s.active THEN
      RAISE EXCEPTION '%: passed the switch position and still streams (slot %, pid %): stop its process, then switch',
        what, s.slot, s.active_pid USING ERRCODE = '55000';
    END IF;
  END LOOP;
  UPDATE espf.handlers SET shards = c.shards_to WHERE instance = inst;
  DELETE FROM espf.shard_changes WHERE instance = inst;
  dropped := espf.drop_shard_slots(inst, c.shards_from);
  RETURN jsonb_build_object('from', c.shards_from, 'to', c.shards_to, 'switch_lsn', c.switch_lsn::text, 'dropped', to_jsonb(dropped));
END
$$;

-- Gives up a planned change (`espf shards cancel`): refuses (55000) while a new
-- shard's slot is streamed (its process must stop first); else drops the new
-- shards' slots (which would keep WAL on the server) and forgets the change.
-- Returns the slots dropped.
CREATE OR REPLACE FUNCTION espf.cancel_shard_change(inst text) RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
  c espf.shard_changes := espf.planned_shard_change(inst, '');
  busy text;
BEGIN
  SELECT string_agg(format('%s (pid %s)', r.slot_name, r.active_pid), ', ' ORDER BY r.slot_name) INTO busy
    FROM generate_series(0, c.shards_to - 1) k
    JOIN pg_replication_slots r ON r.slot_name = espf.shard_slot(inst, k, c.shards_to) AND r.database = current_database()
   WHERE r.active;
  IF busy IS NOT NULL THEN
    RAISE EXCEPTION 'instance %: slot % of a new shard is streamed: stop that process, then cancel', inst, busy USING ERRCODE = '55000';
  END IF;
  DELETE FROM espf.shard_changes WHERE instance = inst;
  RETURN espf.drop_shard_slots(inst, c.shards_to);
END
$$;
