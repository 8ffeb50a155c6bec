-- Catch-up: events that no replication slot carried to a handler are delivered
-- when its instance starts (README "Guarantees", docs/operations.md).
--
-- A logical replication slot carries only what commits after it exists. The
-- slot espf_<instance> is made by the first `espf run --instance <instance>`,
-- so events committed before that, or while a handler moved to an instance
-- that was not running yet, would never reach the handler. On every start,
-- before it streams, `espf run` (src/run/catch-up.ts):
--   1. makes its slot if missing (from then on the slot carries every commit);
--   2. calls espf.catch_up(instance, slot_created): for each enabled handler of
--      the instance that its slot does not already cover (espf.handler_coverage),
--      the events of its types created while it was enabled and subscribed that
--      have no row in espf.event_deliveries for it are recorded PENDING (http
--      handlers; the start-up resumes them before anything new) or dispatched
--      (dispatchers); it returns pg_current_wal_insert_lsn() read after that;
--   3. raises its replay horizon to that position: a streamed transaction that
--      ends at or below it is checked against espf.event_deliveries and the
--      (event, handler) pairs already recorded are skipped.
-- A transaction the catch-up saw had committed before its snapshot, so it ends
-- below the returned position and its pairs have rows: it is skipped. One the
-- catch-up did not see has no row for the handler: the slot (made before the
-- snapshot) carries it and it is delivered. No pair is lost or sent twice.
--
-- A shard process (`espf run --shard K`, README "Shards") does the same for its
-- own slot and catches up only the events of its shard (espf.in_shard), from
-- how far its shard had processed (espf.shard_progress).

-- The look-back: where the exact bound is not known (espf.open_since below),
-- events of a handler whose transaction started at most this long before the
-- point a slot covered it from are looked at again. The point is a time (a
-- heartbeat's mark: every transaction committed before it was processed), an
-- event's created_at is its transaction's start, and a transaction commits
-- after it starts: one that ran longer than the look-back across the mark
-- would be missed. The outbox row has no commit position, and the start of
-- the oldest transaction open at a mark is visible only to a role with
-- pg_read_all_stats (not at all for a prepared transaction), so where it is
-- not visible the bound is this setting, 10 minutes by default: set it above
-- the longest transaction that writes events, ALTER DATABASE … SET
-- espf.catch_up_look_back = '1 hour' (docs/operations.md, "The catch-up's
-- look-back"). A longer look-back only reads more of the outbox: an event
-- already recorded for the handler is not caught up again.
CREATE OR REPLACE FUNCTION espf.catch_up_slack() RETURNS interval LANGUAGE plpgsql STABLE AS $$
DECLARE
  v text := nullif(current_setting('espf.catch_up_look_back', true), '');
  i interval;
BEGIN
  IF v IS NULL THEN
    RETURN interval '10 minutes';
  END IF;
  BEGIN
    i := v::interval;
  EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow OR syntax_error THEN
    i := NULL;
  END;
  IF i IS NULL OR i < interval '0' THEN
    RAISE EXCEPTION 'espf.catch_up_look_back = %: not a duration of 0 or more (e.g. ''30 minutes'')', v USING ERRCODE = '22023';
  END IF;
  RETURN i;
END
$$;

-- espf.handlers.enabled_at: when the handler was last enabled.
CREATE OR REPLACE FUNCTION espf.handler_enabled_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.enabled AND (TG_OP = 'INSERT' OR NOT OLD.enabled) THEN
    NEW.enabled_at := now();
  ELSIF NOT NEW.enabled THEN
    NEW.enabled_at := NULL;
  END IF;
  RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER handler_enabled_at BEFORE INSERT OR UPDATE OF enabled ON espf.handlers
  FOR EACH ROW EXECUTE FUNCTION espf.handler_enabled_at();

-- How far the stream of shard `shard` of `shards` of an instance has processed
-- (0, 1: the whole instance): every transaction committed before it had been
-- processed for that shard's events. The latest of what is known to hold: the
-- shard's own heartbeat, the instance's (written by a process that served the
-- whole instance), and for any number of shards whose every shard has a
-- heartbeat, the earliest of theirs. Null: nothing is known.
CREATE OR REPLACE FUNCTION espf.processed_until(inst text, shard int, shards int)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
  SELECT greatest(
           (SELECT p.processed_until FROM espf.shard_progress p
             WHERE p.instance = inst AND p.shard = processed_until.shard AND p.shards = processed_until.shards AND processed_until.shards > 1),
           (SELECT i.processed_until FROM espf.instances i WHERE i.name = inst),
           (SELECT max(m.until) FROM (
              SELECT min(p.processed_until) AS until FROM espf.shard_progress p
               WHERE p.instance = inst GROUP BY p.shards HAVING count(p.processed_until) = p.shards) m))
$$;

-- An exact bound, where it can be known (docs/replication.md, "The look-back"):
-- the start of the oldest transaction of this database open now (now() when
-- none is older), read with each heartbeat's mark as mark_from. An event
-- created before it belongs to a transaction that had ended by the mark, so
-- once the mark is processed, so is the event (processed_from). Null when it
-- cannot be known: without pg_read_all_stats (or superuser) the transactions
-- of other roles do not show when they started, and a prepared transaction
-- shows when it was prepared, not when it started. The backend status it reads
-- is a snapshot taken at its first read in the transaction, before the mark's
-- WAL position is read (espf.instance_heartbeat reads it first).
CREATE OR REPLACE FUNCTION espf.open_since() RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF NOT (current_setting('is_superuser') = 'on' OR pg_has_role('pg_read_all_stats', 'USAGE')) THEN
    RETURN NULL;
  END IF;
  IF EXISTS (SELECT FROM pg_prepared_xacts p WHERE p.database = current_database()) THEN
    RETURN NULL;
  END IF;
  RETURN least(now(), (SELECT min(a.xact_start) FROM pg_stat_activity a
                        WHERE a.datname = current_database() AND a.xact_start IS NOT NULL
                          AND a.backend_type NOT IN ('autovacuum worker', 'walsender')));
END
$$;

-- The exact bound that goes with espf.processed_until(inst, shard, shards):
-- every event created before it had been processed. Known only when the
-- instance's (shard's) own row gives processed_until and its mark had one.
CREATE OR REPLACE FUNCTION espf.processed_from(inst text, shard int, shards int)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN r.until = espf.processed_until(inst, processed_from.shard, processed_from.shards) THEN r.exact END
    FROM (SELECT (SELECT p.processed_until FROM espf.shard_progress p
                   WHERE p.instance = inst AND p.shard = processed_from.shard AND p.shards = processed_from.shards) AS until,
                 (SELECT p.processed_from FROM espf.shard_progress p
                   WHERE p.instance = inst AND p.shard = processed_from.shard AND p.shards = processed_from.shards) AS exact
           WHERE processed_from.shards > 1
          UNION ALL
          SELECT i.processed_until, i.processed_from FROM espf.instances i
           WHERE i.name = inst AND processed_from.shards <= 1) r
$$;

-- Where a catch-up of instance `inst` (shard) starts from what it had processed:
-- the exact bound if known, else processed_until less the look-back; '-infinity'
-- when nothing is known.
CREATE OR REPLACE FUNCTION espf.processed_start(inst text, shard int, shards int)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
  SELECT coalesce(espf.processed_from(inst, shard, shards),
                  espf.processed_until(inst, shard, shards) - espf.catch_up_slack(), '-infinity')
$$;

-- A handler moved to another instance: the old instance's slot no longer
-- carries it. Keep how far that instance had processed the stream; the new
-- instance catches up from there when it starts.
CREATE OR REPLACE FUNCTION espf.handler_moved() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
  UPDATE espf.handler_coverage c
     SET covered_until = CASE WHEN c.served_by = OLD.instance
                              THEN espf.processed_until(OLD.instance, 0, 1)
                              ELSE c.covered_until END,
         covered_from = CASE WHEN c.served_by = OLD.instance
                             THEN espf.processed_from(OLD.instance, 0, 1)
                             ELSE c.covered_from END,
         served_by = NULL, served_since = NULL
   WHERE c.handler = NEW.name;
  RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER handler_moved AFTER UPDATE OF instance ON espf.handlers
  FOR EACH ROW WHEN (OLD.instance IS DISTINCT FROM NEW.instance) EXECUTE FUNCTION espf.handler_moved();

-- Whether an event with target `target` (espf.events.target_handler, a backfill
-- with --handler; null: every subscribed handler) goes to handler `handler` of
-- kind `kind`: an untargeted event to every handler, a targeted one to its
-- target and to dispatchers (what they produce keeps the target). The route
-- stage of espf run applies the same rule (src/pipeline/route.ts).
CREATE OR REPLACE FUNCTION espf.event_targets(target text, handler text, kind text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT target IS NULL OR target = handler OR kind = 'dispatcher'
$$;

-- The order key of an event (as src/delivery/item.ts computes it): events of
-- one key reach a handler in commit order.
CREATE OR REPLACE FUNCTION espf.order_key(v jsonb, i_event bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE
           WHEN coalesce(jsonb_typeof(v -> 'i_account'), 'null') <> 'null' THEN 'a:' || (v ->> 'i_account')
           WHEN coalesce(jsonb_typeof(v -> 'i_customer'), 'null') <> 'null' THEN 'c:' || (v ->> 'i_customer')
           WHEN coalesce(jsonb_typeof(v -> 'i_product'), 'null') <> 'null' THEN 'p:' || (v ->> 'i_product')
           WHEN jsonb_typeof(v -> 'owner_type') = 'string' AND coalesce(jsonb_typeof(v -> 'owner_id'), 'null') <> 'null'
             THEN left(v ->> 'owner_type', 1) || ':' || (v ->> 'owner_id')
           ELSE 'e:' || i_event
         END
$$;

-- From when the events of a handler must be caught up for instance `inst`
-- (its shard `shard` of `shards`): null when the slot already carries them (the
-- instance served the handler before and the slot was not just made); else how
-- far the instance (shard) had processed, or the point the previous instance's
-- slot covered it to, less the slack; '-infinity' when nothing is known.
CREATE OR REPLACE FUNCTION espf.catch_up_from(handler text, inst text, slot_created boolean, shard int, shards int)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
  SELECT CASE
           WHEN c.served_by = inst AND NOT slot_created AND o.owed_from IS NULL THEN NULL
           WHEN c.served_by = inst AND o.owed_from IS NOT NULL THEN o.owed_from
           WHEN c.served_by = inst THEN espf.processed_start(inst, catch_up_from.shard, catch_up_from.shards)
           ELSE coalesce(c.covered_from, c.covered_until - espf.catch_up_slack(), '-infinity')
         END
    FROM (SELECT 1) one
    LEFT JOIN espf.handler_coverage c ON c.handler = catch_up_from.handler
    -- A shard whose slot was made anew and that has not caught up since (espf.slot_missing).
    LEFT JOIN espf.shard_progress o ON o.instance = inst AND o.shard = catch_up_from.shard
                                   AND o.shards = catch_up_from.shards AND catch_up_from.shards > 1
$$;

CREATE OR REPLACE FUNCTION espf.catch_up_from(handler text, inst text, slot_created boolean)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
  SELECT espf.catch_up_from(handler, inst, slot_created, 0, 1)
$$;

-- The (handler, event) pairs instance `inst` (its shard `shard` of `shards`)
-- must catch up: for each enabled handler of the instance that its slot does
-- not cover, the events of the shard of the types it is subscribed to (and that
-- target it or every handler: espf.event_targets), created
-- while it was enabled and subscribed, from espf.catch_up_from on, with no row
-- in espf.event_deliveries for it.
CREATE OR REPLACE FUNCTION espf.catch_up_candidates(inst text, slot_created boolean, shard int, shards int)
RETURNS TABLE (handler text, kind text, i_event bigint)
LANGUAGE sql STABLE AS $$
  SELECT h.name, h.kind, e.i_event
    FROM espf.handlers h
   CROSS JOIN LATERAL (SELECT espf.catch_up_from(h.name, inst, slot_created, catch_up_candidates.shard, catch_up_candidates.shards) AS t) w
   CROSS JOIN LATERAL (
           SELECT e.i_event
             FROM espf.events e
             JOIN espf.subscriptions s ON s.handler = h.name AND s.event_type = e.event_type
            WHERE e.created_at >= greatest(w.t, coalesce(h.enabled_at, '-infinity'))
              AND e.created_at >= s.created_at
              AND espf.event_targets(e.target_handler, h.name, h.kind)
              AND espf.in_shard(e, catch_up_candidates.shard, catch_up_candidates.shards)
              AND NOT EXISTS (SELECT 1 FROM espf.event_deliveries d WHERE d.i_event = e.i_event AND d.handler = h.name)) e
   WHERE h.instance = inst AND h.enabled AND w.t IS NOT NULL
$$;

CREATE OR REPLACE FUNCTION espf.catch_up_candidates(inst text, slot_created boolean)
RETURNS TABLE (handler text, kind text, i_event bigint)
LANGUAGE sql STABLE AS $$
  SELECT * FROM espf.catch_up_candidates(inst, slot_created, 0, 1)
$$;

-- Called by `espf run --instance <inst> [--shard K]` once it has its slot and
-- before it streams (see the top of this file); a shard catches up its own events. Records the events to catch up for its
-- http handlers as PENDING deliveries, ordered after what already waits for the
-- handler (espf.waiting_deliveries loads them before anything new), and runs
-- its dispatchers on theirs (espf.dispatch: the events they produce are new
-- commits, which the slot carries). Marks the instance's enabled handlers as
-- covered by its slot, and records the start in espf.instances.
-- Returns {"horizon": <WAL insert position after all this>, "handlers": {"<handler>": <events>, …}}.
CREATE OR REPLACE FUNCTION espf.catch_up(inst text, slot_created boolean, host text, pid int, shard int, shards int)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
  counts jsonb := '{}';
  total bigint := 0;
  r record;
BEGIN
  -- Two starts of one instance at once catch up one after the other.
  PERFORM pg_advisory_xact_lock(hashtext('espf.catch_up'), hashtext(inst));

  -- http handlers: PENDING rows, after what already waits for the handler (commit_lsn), in i_event order.
  FOR r IN
    WITH c AS (SELECT x.handler, x.i_event FROM espf.catch_up_candidates(inst, slot_created, shard, shards) x WHERE x.kind = 'http'),
         behind AS (SELECT d.handler, max(d.commit_lsn) AS lsn
                      FROM espf.event_deliveries d
                     WHERE d.handler IN (SELECT DISTINCT c.handler FROM c) AND d.state IN ('PENDING', 'RETRY')
                     GROUP BY d.handler),
         ins AS (
           INSERT INTO espf.event_deliveries AS d
                  (i_event, handler, state, event_type, order_key, i_account, instance, commit_lsn, committed_at)
           SELECT e.i_event, c.handler, 'PENDING', e.event_type, espf.order_key(e.variables, e.i_event),
                  CASE WHEN jsonb_typeof(e.variables -> 'i_account') = 'number' THEN (e.variables ->> 'i_account')::bigint END,
                  inst, coalesce(b.lsn, '0/0'), e.created_at
             FROM c
             JOIN espf.events e ON e.i_event = c.i_event
             LEFT JOIN behind b ON b.handler = c.handler
           ON CONFLICT ON CONSTRAINT event_deliveries_pkey DO NOTHING
           RETURNING d.handler)
    SELECT ins.handler, count(*) AS n FROM ins GROUP BY ins.handler
  LOOP
    counts := counts || jsonb_build_object(r.handler, r.n);
    total := total + r.n;
  END LOOP;

  -- Dispatchers: every candidate is read (aggregated) before the first dispatch runs.
  FOR r IN
    SELECT x.handler, array_agg(x.i_event ORDER BY x.i_event) AS sources
      FROM espf.catch_up_candidates(inst, slot_created, shard, shards) x
     WHERE x.kind = 'dispatcher'
     GROUP BY x.handler
  LOOP
    PERFORM espf.dispatch(r.handler, r.sources, inst);
    counts := counts || jsonb_build_object(r.handler, cardinality(r.sources));
    total := total + cardinality(r.sources);
  END LOOP;

  -- From now on the slot carries the events of the instance's enabled handlers.
  INSERT INTO espf.handler_coverage AS c (handler, served_by, served_since)
  SELECT h.name, inst, now() FROM espf.handlers h WHERE h.instance = inst AND h.enabled
  ON CONFLICT (handler) DO UPDATE SET served_by = excluded.served_by, served_since = excluded.served_since
   WHERE c.served_by IS DISTINCT FROM excluded.served_by OR slot_created;

  -- A shard's owed catch-up is done (espf.slot_missing).
  UPDATE espf.shard_progress p SET owed_from = NULL
   WHERE p.instance = inst AND p.shard = catch_up.shard AND p.shards = catch_up.shards AND catch_up.shards > 1
     AND p.owed_from IS NOT NULL;

  INSERT INTO espf.instances AS i (name, started_at, caught_up_at, caught_up_events, host, pid)
  VALUES (inst, now(), now(), total, catch_up.host, catch_up.pid)
  ON CONFLICT (name) DO UPDATE SET started_at = excluded.started_at, caught_up_at = excluded.caught_up_at,
         caught_up_events = excluded.caught_up_events, host = excluded.host, pid = excluded.pid;

  -- Read after every write above: any transaction this catch-up saw ends below it.
  RETURN jsonb_build_object('horizon', pg_current_wal_insert_lsn()::text, 'handlers', counts);
END
$$;

-- The whole instance (not split into shards).
CREATE OR REPLACE FUNCTION espf.catch_up(inst text, slot_created boolean, host text DEFAULT NULL, pid int DEFAULT NULL)
RETURNS jsonb LANGUAGE sql AS $$
  SELECT espf.catch_up(inst, slot_created, host, pid, 0, 1)
$$;

-- The mark of a heartbeat: once the durable position passes the WAL position
-- noted at the previous mark, every transaction committed before that mark was
-- processed; a new mark is noted then (or when there is none).
CREATE OR REPLACE FUNCTION espf.next_mark(was_until timestamptz, was_at timestamptz, was_lsn pg_lsn, durable_lsn pg_lsn)
RETURNS TABLE (processed_until timestamptz, mark_at timestamptz, mark_lsn pg_lsn) LANGUAGE sql VOLATILE AS $$
  SELECT CASE WHEN was_lsn IS NOT NULL AND durable_lsn >= was_lsn THEN greatest(was_until, was_at) ELSE was_until END,
         CASE WHEN was_lsn IS NULL OR durable_lsn >= was_lsn THEN now() ELSE was_at END,
         CASE WHEN was_lsn IS NULL OR durable_lsn >= was_lsn THEN pg_current_wal_insert_lsn() ELSE was_lsn END
$$;

-- The heartbeat of a running instance (every few seconds, src/run/instances.ts):
-- when it last streamed; how far its stream has processed (processed_until:
-- once the durable position passes the WAL position noted at the previous
-- mark, every transaction committed before that mark was processed); and the
-- handlers it serves while streaming (one moved to it while it ran, or enabled
-- since its start), which its slot covers from now on.
-- Of shard `shard` of `shards` (0, 1: the whole instance): the mark goes to the
-- shard's row of espf.shard_progress, the instance's row only says it streamed.
CREATE OR REPLACE FUNCTION espf.instance_heartbeat(inst text, streaming boolean, durable_lsn pg_lsn, served text[], shard int, shards int)
RETURNS void LANGUAGE sql AS $$
  -- First: the backend status snapshot of this transaction, before any WAL position is read.
  SELECT espf.open_since();
  INSERT INTO espf.instances (name) VALUES (inst) ON CONFLICT (name) DO NOTHING;
  UPDATE espf.instances i SET streamed_at = now() WHERE i.name = inst AND streaming;
  UPDATE espf.instances i SET (processed_until, mark_at, mark_lsn, processed_from, mark_from) =
         (SELECT m.processed_until, m.mark_at, m.mark_lsn,
                 CASE WHEN i.mark_lsn IS NOT NULL AND durable_lsn >= i.mark_lsn THEN i.mark_from ELSE i.processed_from END,
                 CASE WHEN i.mark_lsn IS NULL OR durable_lsn >= i.mark_lsn THEN espf.open_since() ELSE i.mark_from END
            FROM espf.next_mark(i.processed_until, i.mark_at, i.mark_lsn, durable_lsn) m)
   WHERE i.name = inst AND instance_heartbeat.shards <= 1;
  INSERT INTO espf.shard_progress AS p (instance, shard, shards)
  SELECT inst, instance_heartbeat.shard, instance_heartbeat.shards WHERE instance_heartbeat.shards > 1
  ON CONFLICT ON CONSTRAINT shard_progress_pkey DO NOTHING;
  UPDATE espf.shard_progress p SET
         streamed_at = CASE WHEN streaming THEN now() ELSE p.streamed_at END,
         (processed_until, mark_at, mark_lsn, processed_from, mark_from) =
         (SELECT m.processed_until, m.mark_at, m.mark_lsn,
                 CASE WHEN p.mark_lsn IS NOT NULL AND durable_lsn >= p.mark_lsn THEN p.mark_from ELSE p.processed_from END,
                 CASE WHEN p.mark_lsn IS NULL OR durable_lsn >= p.mark_lsn THEN espf.open_since() ELSE p.mark_from END
            FROM espf.next_mark(p.processed_until, p.mark_at, p.mark_lsn, durable_lsn) m)
   WHERE p.instance = inst AND p.shard = instance_heartbeat.shard AND p.shards = instance_heartbeat.shards AND instance_heartbeat.shards > 1;
  INSERT INTO espf.handler_coverage AS c (handler, served_by, served_since)
  SELECT h.name, inst, now() FROM espf.handlers h
   WHERE streaming AND h.name = ANY (served) AND h.instance = inst AND h.enabled
  ON CONFLICT (handler) DO UPDATE SET served_by = excluded.served_by, served_since = excluded.served_since
   WHERE c.served_by IS DISTINCT FROM excluded.served_by;
$$;

CREATE OR REPLACE FUNCTION espf.instance_heartbeat(inst text, streaming boolean, durable_lsn pg_lsn, served text[])
RETURNS void LANGUAGE sql AS $$
  SELECT espf.instance_heartbeat(inst, streaming, durable_lsn, served, 0, 1)
$$;

-- A graceful stop of an instance.
CREATE OR REPLACE FUNCTION espf.instance_stopped(inst text) RETURNS void LANGUAGE sql AS $$
  UPDATE espf.instances SET stopped_at = now() WHERE name = inst;
$$;

-- Whether an instance streams now: a heartbeat in the last 30 seconds and no graceful stop since.
CREATE OR REPLACE FUNCTION espf.instance_streaming(inst text) RETURNS boolean LANGUAGE sql STABLE AS $$
  SELECT coalesce((SELECT i.streamed_at > now() - interval '30 seconds' AND (i.stopped_at IS NULL OR i.stopped_at < i.streamed_at)
                     FROM espf.instances i WHERE i.name = inst), false)
$$;

-- Enabled handlers whose instance is not streaming, and how many events wait
-- for each: events no slot has delivered to it yet (what its instance catches up
-- or streams when it starts). `espf status`, /healthz and docs/operations.md.
CREATE OR REPLACE VIEW espf.report_waiting_handlers AS
SELECT h.name AS handler,
       h.kind,
       h.instance,
       CASE WHEN i.streamed_at IS NULL
                 AND NOT EXISTS (SELECT 1 FROM pg_replication_slots s
                                  WHERE s.slot_name = espf.shard_slot(h.instance, 0, 1) AND s.database = current_database())
            THEN 'never streamed' ELSE 'not streaming' END AS instance_state,
       i.streamed_at AS last_streamed_at,
       i.stopped_at,
       (SELECT count(*) FROM espf.catch_up_candidates(h.instance, true) c WHERE c.handler = h.name) AS waiting_events
  FROM espf.handlers h
  LEFT JOIN espf.instances i ON i.name = h.instance
 WHERE h.enabled AND NOT espf.instance_streaming(h.instance);

-- The slot of instance `inst` is missing when it is about to be made (a
-- failover without failover slots, a slot dropped or lost; src/run/catch-up.ts):
-- the instance's handlers are no longer covered by a slot, from how far the
-- instance had processed on. The catch-up that follows the new slot starts
-- there, and so does the next one if the process stops between making the
-- slot and catching up (espf.catch_up_from: not served, covered_until).
CREATE OR REPLACE FUNCTION espf.slot_missing(inst text) RETURNS void LANGUAGE sql AS $$
  UPDATE espf.handler_coverage c
     SET covered_until = espf.processed_until(inst, 0, 1),
         covered_from = espf.processed_from(inst, 0, 1),
         served_by = NULL, served_since = NULL
   WHERE c.served_by = inst;
$$;

-- The same for shard `shard` of `shards` of an instance (0, 1: the whole
-- instance, above). The handlers stay covered for the other shards: the owed
-- catch-up is this shard's, from where its catch-up starts now
-- (espf.processed_start; espf.shard_progress.owed_from, kept until its
-- catch-up commits).
CREATE OR REPLACE FUNCTION espf.slot_missing(inst text, shard int, shards int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF shards <= 1 THEN
    PERFORM espf.slot_missing(inst);
    RETURN;
  END IF;
  INSERT INTO espf.shard_progress AS p (instance, shard, shards, owed_from)
  VALUES (inst, slot_missing.shard, slot_missing.shards,
          espf.processed_start(inst, slot_missing.shard, slot_missing.shards))
  ON CONFLICT ON CONSTRAINT shard_progress_pkey DO UPDATE
     SET owed_from = coalesce(p.owed_from, excluded.owed_from);
END
$$;
