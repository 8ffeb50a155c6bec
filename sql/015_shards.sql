-- Shards (migrations/0013_shards.sql, README "Shards", docs/scaling.md).
-- Shard K (0 … N-1) of an instance split into N streams its own slot
-- espf_<instance>_<K>of<N> through the publication espf_events_<K>of<N>, whose
-- row filter keeps the events with shard_key % N = K. An instance with one
-- shard streams espf_<instance> through espf_events, as before.

-- The slot of shard K of N of an instance.
CREATE OR REPLACE FUNCTION espf.shard_slot(inst text, shard int, shards int) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN shards <= 1 THEN 'espf_' || inst ELSE format('espf_%s_%sof%s', inst, shard, shards) END
$$;

-- Whether an event belongs to shard K of N. Events written before
-- migrations/0013_shards.sql have no shard_key: it is computed here.
CREATE OR REPLACE FUNCTION espf.in_shard(e espf.events, shard int, shards int) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT shards <= 1 OR coalesce(e.shard_key, espf.shard_key(e.variables, e.i_event)) % shards = shard
$$;

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
