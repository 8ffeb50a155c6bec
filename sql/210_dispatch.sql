-- espf.dispatch runs a dispatcher for a batch of source events, in one
-- transaction: it claims each (source event, dispatcher) with a DISPATCHED row
-- of espf.event_deliveries and inserts what the dispatcher's rules
-- (espf.dispatcher_rules, sql/200_dispatchers.sql) produce for the events it
-- claimed. A replay of the same source events (after a crash) claims nothing
-- and produces nothing, so children are never duplicated.
-- Only enabled event types are produced. A produced event keeps the target of
-- its source (espf.events.target_handler, a backfill with --handler): the events a
-- targeted backfill fans out reach that handler only. Returns the number of
-- events produced.
CREATE OR REPLACE FUNCTION espf.dispatch(handler text, source_events bigint[], instance text,
                                         commit_lsn pg_lsn DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  claimed bigint[];
  parts text;
  produced bigint := 0;
BEGIN
  WITH c AS (
    INSERT INTO espf.event_deliveries AS d
           (i_event, handler, state, event_type, order_key, instance, commit_lsn, attempts,
            first_attempt_at, last_attempt_at, finished_at)
    SELECT e.i_event, dispatch.handler, 'DISPATCHED', e.event_type, 'e:' || e.i_event, dispatch.instance,
           dispatch.commit_lsn, 1, now(), now(), now()
      FROM espf.events e
     WHERE e.i_event = ANY (source_events)
    ON CONFLICT ON CONSTRAINT event_deliveries_pkey DO NOTHING
    RETURNING d.i_event)
  SELECT coalesce(array_agg(i_event), '{}') INTO claimed FROM c;

  IF cardinality(claimed) = 0 THEN
    RETURN 0;
  END IF;

  -- One statement for the batch, over the functions of the rules of the types
  -- in it (sql/200_dispatchers.sql): each locks the rows its query reads and
  -- returns them in (source event, i_account) order; the produced events take
  -- their i_event in that order (the rows of several functions merged in it),
  -- so that an account's events from two sources of one batch follow the
  -- sources. espf adds i_account (unless null), source_i_event, i_event, i_env
  -- and event_time to the rule's variables, in one jsonb_build_object.
  SELECT CASE WHEN count(*) = 0 THEN NULL WHEN count(*) = 1 THEN min(f)
              ELSE format('SELECT * FROM (%s) u ORDER BY u.source_i_event, u.i_account', string_agg(f, ' UNION ALL ' ORDER BY f)) END
    INTO parts
    FROM (SELECT format('SELECT * FROM espf.%I($1)', espf.dispatcher_function_name(r.handler, r.event_type)) AS f
            FROM espf.dispatcher_rules r
           WHERE r.handler = dispatch.handler
             AND r.event_type IN (SELECT e.event_type FROM espf.events e WHERE e.i_event = ANY (claimed))) x;
  IF parts IS NULL THEN
    RETURN 0;
  END IF;
  EXECUTE format($q$
    INSERT INTO espf.events (i_event, event_type, variables, source_i_event, target_handler)
    SELECT p.i_event, p.event_type,
           p.variables || CASE WHEN p.i_account IS NULL
             THEN jsonb_build_object('source_i_event', p.source_i_event, 'i_event', p.i_event, 'i_env', p.i_env, 'event_time', espf.event_time())
             ELSE jsonb_build_object('i_account', p.i_account, 'source_i_event', p.source_i_event, 'i_event', p.i_event, 'i_env', p.i_env,
                                     'event_time', espf.event_time()) END,
           p.source_i_event, p.target_handler
      FROM (SELECT nextval('espf.events_i_event_seq') AS i_event, v.* FROM (%s) v) p
  $q$, parts) USING claimed;
  GET DIAGNOSTICS produced = ROW_COUNT;
  RETURN produced;
END
$$;
