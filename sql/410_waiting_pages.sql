-- Long outages of a receiver (docs/operations.md, "A receiver is down"): the
-- pages of waiting deliveries, and the circuit breaker state of each target.
--
-- Deliveries that wait (PENDING, RETRY) live in espf.event_deliveries; espf run
-- keeps only a bounded window of them in memory and reads the next page of one
-- handler's waiting deliveries as room frees up (docs/operations.md, "Memory").
--
-- A page is in stream order (commit position, then i_event), after a cursor
-- (the commit_lsn and i_event of the last row of the previous page; NULL, 0 for
-- the first page): stream order
-- keeps the events of each account in commit order, and a reader that appends
-- page after page to per-account queues never puts an account's later event
-- before an earlier one. Rows without a commit position (none are written by
-- this version) come first. The partial index event_deliveries_waiting_idx
-- (handler, commit_lsn, i_event) serves it.
--
-- Of a shard (README "Shards"): shard `shard` of `shards` reads only the
-- deliveries of its events (espf.in_shard); 0, 1 is the whole instance. The
-- index is read in the same order; rows of the other shards are skipped.
-- Request steps (migrations/0015_request_steps.sql) added steps_done and
-- step_answers to a page: the old function is dropped first (once).
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_proc p WHERE p.pronamespace = 'espf'::regnamespace
                AND p.proname = 'waiting_page' AND NOT ('steps_done' = ANY (p.proargnames))) THEN
    DROP FUNCTION IF EXISTS espf.waiting_page(text, pg_lsn, bigint, int);
    DROP FUNCTION IF EXISTS espf.waiting_page(text, pg_lsn, bigint, int, int, int);
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION espf.waiting_page(for_handler text, after_lsn pg_lsn, after_i_event bigint, max_rows int,
                                             shard int, shards int)
RETURNS TABLE (i_event bigint, handler text, state text, event_type text, variables jsonb,
               source_i_event bigint, commit_lsn text, attempts int, urls_done int,
               next_attempt_at timestamptz, committed_at timestamptz, first_attempt_at timestamptz,
               steps_done int, step_answers jsonb)
LANGUAGE plpgsql STABLE AS $$
DECLARE
  n bigint := 0;
BEGIN
  -- Each query reads the index in its own order: never a sort of the whole backlog.
  IF after_lsn IS NOT NULL THEN
    RETURN QUERY
      SELECT d.i_event, d.handler, d.state, e.event_type, e.variables, e.source_i_event, d.commit_lsn::text,
             d.attempts, d.urls_done, d.next_attempt_at, d.committed_at, d.first_attempt_at, d.steps_done, d.step_answers
        FROM espf.event_deliveries d
        JOIN espf.events e ON e.i_event = d.i_event
       WHERE d.handler = for_handler AND d.state IN ('PENDING', 'RETRY') AND espf.in_shard(e, shard, shards)
         AND (d.commit_lsn, d.i_event) > (after_lsn, after_i_event)
       ORDER BY d.commit_lsn, d.i_event
       LIMIT max_rows;
    RETURN;
  END IF;
  RETURN QUERY
    SELECT d.i_event, d.handler, d.state, e.event_type, e.variables, e.source_i_event, d.commit_lsn::text,
           d.attempts, d.urls_done, d.next_attempt_at, d.committed_at, d.first_attempt_at, d.steps_done, d.step_answers
      FROM espf.event_deliveries d
      JOIN espf.events e ON e.i_event = d.i_event
     WHERE d.handler = for_handler AND d.state IN ('PENDING', 'RETRY') AND espf.in_shard(e, shard, shards)
       AND d.commit_lsn IS NULL AND d.i_event > after_i_event
     ORDER BY d.i_event
     LIMIT max_rows;
  GET DIAGNOSTICS n = ROW_COUNT;
  IF n < max_rows THEN
    RETURN QUERY
      SELECT d.i_event, d.handler, d.state, e.event_type, e.variables, e.source_i_event, d.commit_lsn::text,
             d.attempts, d.urls_done, d.next_attempt_at, d.committed_at, d.first_attempt_at, d.steps_done, d.step_answers
        FROM espf.event_deliveries d
        JOIN espf.events e ON e.i_event = d.i_event
       WHERE d.handler = for_handler AND d.state IN ('PENDING', 'RETRY') AND espf.in_shard(e, shard, shards) AND d.commit_lsn IS NOT NULL
       ORDER BY d.commit_lsn, d.i_event
       LIMIT max_rows - n;
  END IF;
END
$$;

-- Not sharded: every waiting delivery of the handler.
CREATE OR REPLACE FUNCTION espf.waiting_page(for_handler text, after_lsn pg_lsn, after_i_event bigint, max_rows int)
RETURNS TABLE (i_event bigint, handler text, state text, event_type text, variables jsonb,
               source_i_event bigint, commit_lsn text, attempts int, urls_done int,
               next_attempt_at timestamptz, committed_at timestamptz, first_attempt_at timestamptz,
               steps_done int, step_answers jsonb)
LANGUAGE sql STABLE AS $$
  SELECT * FROM espf.waiting_page(for_handler, after_lsn, after_i_event, max_rows, 0, 1)
$$;

-- The last waiting delivery of a handler (of shard `shard` of `shards`) in stream
-- order, with a commit position: where the pages read at a start end.
CREATE OR REPLACE FUNCTION espf.last_waiting(for_handler text, shard int, shards int)
RETURNS TABLE (lsn pg_lsn, i_event bigint)
LANGUAGE sql STABLE AS $$
  SELECT d.commit_lsn, d.i_event
    FROM espf.event_deliveries d
    JOIN espf.events e ON e.i_event = d.i_event
   WHERE d.handler = for_handler AND d.state IN ('PENDING', 'RETRY') AND d.commit_lsn IS NOT NULL
     AND espf.in_shard(e, shard, shards)
   ORDER BY d.commit_lsn DESC, d.i_event DESC
   LIMIT 1
$$;

-- The breaker state of a target, as the sender reports it: one row per
-- (handler, url, i_env), replaced on every change. i_env: the environment whose
-- settings the target belongs to (espf.http_handler_envs), null for the default row.
CREATE OR REPLACE FUNCTION espf.note_target_state(handler text, url text, instance text, up boolean, since timestamptz,
  failures int, probes int, next_probe_at timestamptz, last_http_status int, last_error text, i_env int)
RETURNS void LANGUAGE sql AS $$
  INSERT INTO espf.target_states AS t (handler, url, i_env, instance, up, since, failures, probes, next_probe_at,
                                       last_http_status, last_error, updated_at)
  SELECT note_target_state.handler, note_target_state.url, note_target_state.i_env, note_target_state.instance, note_target_state.up,
         note_target_state.since, note_target_state.failures, note_target_state.probes, note_target_state.next_probe_at,
         note_target_state.last_http_status, note_target_state.last_error, now()
   WHERE EXISTS (SELECT 1 FROM espf.handlers h WHERE h.name = note_target_state.handler)
  ON CONFLICT ON CONSTRAINT target_states_target_key DO UPDATE SET
         instance = excluded.instance, up = excluded.up, since = excluded.since, failures = excluded.failures,
         probes = excluded.probes, next_probe_at = excluded.next_probe_at,
         last_http_status = excluded.last_http_status, last_error = excluded.last_error, updated_at = now();
$$;

-- As an espf run of a release before migrations/0025_http_handler_envs.sql calls
-- it (during a rolling upgrade): the default row's target.
CREATE OR REPLACE FUNCTION espf.note_target_state(handler text, url text, instance text, up boolean, since timestamptz,
  failures int, probes int, next_probe_at timestamptz, last_http_status int, last_error text)
RETURNS void LANGUAGE sql AS $$
  SELECT espf.note_target_state(handler, url, instance, up, since, failures, probes, next_probe_at, last_http_status, last_error, NULL::int)
$$;

-- The environment whose lane of `for_handler` delivers an event with these
-- variables (src/delivery/http-handler.ts, envOf): its whole-number i_env when
-- espf.http_handler_envs has a row for it, else null (the default row's lane).
CREATE OR REPLACE FUNCTION espf.lane_env(for_handler text, variables jsonb) RETURNS int
LANGUAGE sql STABLE AS $$
  SELECT h.i_env FROM espf.http_handler_envs h
   WHERE h.handler = for_handler
     AND h.i_env = CASE jsonb_typeof(variables -> 'i_env')
           WHEN 'number' THEN CASE WHEN (variables ->> 'i_env')::numeric BETWEEN -2147483648 AND 2147483647
                                   AND (variables ->> 'i_env')::numeric = trunc((variables ->> 'i_env')::numeric)
                                   THEN (variables ->> 'i_env')::numeric::int END
           WHEN 'string' THEN CASE WHEN (variables ->> 'i_env') ~ '^[0-9]{1,9}$' THEN (variables ->> 'i_env')::int END
         END
$$;

-- migrations/0025_http_handler_envs.sql made targets per environment: down_targets
-- returns their i_env (a changed result type: the old function is dropped first, once).
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_proc p WHERE p.pronamespace = 'espf'::regnamespace
                AND p.proname = 'down_targets' AND NOT ('i_env' = ANY (p.proargnames))) THEN
    DROP FUNCTION espf.down_targets(interval);
  END IF;
END
$$;

-- Targets the circuit breaker holds down for longer than `older_than`, shaped as
-- espf.unreachable_targets (for the failure e-mail) plus the target's i_env:
-- `failing` counts the waiting deliveries of its lane (those of the handler's
-- events of that environment; of the other environments for the default row's
-- targets), `failing_since` is when the target went down.
CREATE OR REPLACE FUNCTION espf.down_targets(older_than interval)
RETURNS TABLE (handler text, instance text, url text[], failing bigint, failing_since timestamptz,
               last_http_status int, last_error text, probes int, i_env int)
LANGUAGE sql STABLE AS $$
  SELECT t.handler, t.instance, ARRAY[t.url],
         CASE WHEN t.i_env IS NULL AND NOT EXISTS (SELECT 1 FROM espf.http_handler_envs h WHERE h.handler = t.handler)
           THEN (SELECT count(*) FROM espf.event_deliveries d WHERE d.handler = t.handler AND d.state IN ('PENDING', 'RETRY'))
           ELSE (SELECT count(*) FROM espf.event_deliveries d JOIN espf.events e ON e.i_event = d.i_event
                  WHERE d.handler = t.handler AND d.state IN ('PENDING', 'RETRY')
                    AND espf.lane_env(t.handler, e.variables) IS NOT DISTINCT FROM t.i_env)
         END,
         t.since, t.last_http_status, t.last_error, t.probes, t.i_env
    FROM espf.target_states t
   WHERE NOT t.up AND t.since < now() - older_than
   ORDER BY t.handler, t.url, t.i_env NULLS FIRST
$$;
