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
  -- in it (sql/200_dispatchers.sql): each locks the rows its query reads, then
  -- the produced events take their i_event in (source event, i_account) order,
  -- so that an account's events from two sources of one batch follow the sources.
  SELECT string_agg(format('SELECT * FROM espf.%I($1)', espf.dispatcher_function_name(r.handler, r.event_type)),
                    ' UNION ALL ' ORDER BY r.event_type)
    INTO parts
    FROM espf.dispatcher_rules r
   WHERE r.handler = dispatch.handler
     AND r.event_type IN (SELECT e.event_type FROM espf.events e WHERE e.i_event = ANY (claimed));
  IF parts IS NULL THEN
    RETURN 0;
  END IF;
  EXECUTE format($q$
    INSERT INTO espf.events (i_event, event_type, variables, source_i_event, target_handler)
    SELECT p.i_event, p.event_type,
           espf.dispatched_variables(p.variables, p.i_account, p.source_i_event)
             || jsonb_build_object('i_event', p.i_event, 'i_env', p.i_env, 'event_time', espf.event_time()),
           p.source_i_event, p.espf_source_target_handler
      FROM (SELECT nextval('espf.events_i_event_seq') AS i_event, v.*
              FROM (SELECT v.*, s.target_handler AS espf_source_target_handler FROM (%s) v
                      JOIN espf.events s ON s.i_event = v.source_i_event
                      JOIN espf.event_types t ON t.name = v.event_type AND t.enabled
                     ORDER BY v.source_i_event, v.i_account) v) p
  $q$, parts) USING claimed;
  GET DIAGNOSTICS produced = ROW_COUNT;
  RETURN produced;
END
$$;
