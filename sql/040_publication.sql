-- The publication espf run streams (src/stream/replication.ts): inserts into
-- espf.events only. migrations/0002 created it first; this is its one
-- definition from then on, and puts it back if it was dropped. espf run never
-- creates it (the role it runs as need not own espf.events).
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'espf_events') THEN
    CREATE PUBLICATION espf_events FOR TABLE espf.events WITH (publish = 'insert');
  END IF;
END
$$;
