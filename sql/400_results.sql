-- Outcomes are written in batches by espf run: one call records many deliveries
-- and the provisioning status of their accounts, in one transaction.
--
-- The records come as one array per column of espf.event_deliveries (the
-- same length each; element k of every array is record k, in the order the
-- batch was made; times as epoch milliseconds), one (i_event, handler) at most
-- once. One statement; the arrays are read once (array input is a single pass
-- with no per-record hash table: a batch as JSON cost about twice as much to
-- read as the rest of this function, docs/benchmarks.md).
--
-- The identity of the event (docs/operations.md, "PostgreSQL 15 and 16, or a
-- slot missing after a failover"): after an asynchronous failover the new
-- primary may hand a lost event's i_event to a new event, and an outcome of
-- the lost one must not land on it. An outcome is dropped when espf.events has
-- no event of its number and type that is the one delivered: one of the same
-- created_at (epoch milliseconds, `created_at`: events from the stream), or,
-- for a delivery read back from its row (no created_at), one created by the
-- time the row says its transaction committed (`committed_at`; a new event
-- made after a failover was created later). Neither known: not checked.
-- Returns the i_event of the outcomes dropped (the sender logs them).
--
-- The overview's counts (espf.delivery_minutes, sql/420_delivery_minutes.sql)
-- of what this writes are kept here: each row it writes is a record as given,
-- so the batch's finished records are counted from the records, in one upsert
-- per (handler, minute) in key order, and the statement triggers need not read
-- the rows back (espf.minutes_counted, set for this call only, tells them; the
-- UPDATE trigger then only takes out what a rewritten row counted before).
--
-- `fresh` (true per record, or NULL): the sender knows no row of that delivery
-- exists yet (an event from the stream past what was recorded before, its first
-- outcome: src/pipeline/route.ts). Those rows are written by a plain INSERT,
-- the others by INSERT … ON CONFLICT DO UPDATE: a speculative insertion probes
-- the primary key before it inserts and writes one more WAL record per row to
-- confirm it, about 2 µs and 48 bytes per delivery (docs/benchmarks.md,
-- "WAL records per event"). A fresh record whose row exists after all fails
-- the call with unique_violation (23505); the sender then writes the batch
-- again with every record not fresh.
--
-- With its owner's rights (the sender may not write the counts); its search
-- path is pg_catalog, so every name of espf is qualified.
CREATE OR REPLACE FUNCTION espf.record_deliveries(
  instance text, check_identity boolean,
  i_event bigint[], handler text[], state text[], event_type text[], order_key text[], i_account bigint[],
  commit_lsn pg_lsn[], attempts int[], urls_done int[], last_http_status int[], last_error text[],
  next_attempt_at float8[], committed_at float8[], first_attempt_at float8[], last_attempt_at float8[],
  finished_at float8[], created_at float8[], steps_done int[], step_answers jsonb[], fresh boolean[])
RETURNS bigint[] LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp SET espf.minutes_counted = 'on' AS $$
  WITH given AS MATERIALIZED (
    SELECT r.*, (r.created_at IS NULL AND r.committed_at IS NULL) OR EXISTS (
             SELECT FROM espf.events e
              WHERE e.i_event = r.i_event AND e.event_type = r.event_type
                AND CASE WHEN r.created_at IS NOT NULL
                         THEN abs(extract(epoch FROM date_trunc('milliseconds', e.created_at)) * 1000 - r.created_at) < 0.5
                         ELSE e.created_at < to_timestamp(r.committed_at / 1000.0) + interval '1 millisecond' END) AS same_event
      FROM unnest(i_event, handler, state, event_type, order_key, i_account, commit_lsn, attempts, urls_done,
                  last_http_status, last_error, next_attempt_at, committed_at, first_attempt_at, last_attempt_at,
                  finished_at, created_at, steps_done, step_answers, fresh) WITH ORDINALITY AS r(
           i_event, handler, state, event_type, order_key, i_account, commit_lsn, attempts, urls_done,
           last_http_status, last_error, next_attempt_at, committed_at, first_attempt_at, last_attempt_at,
           finished_at, created_at, steps_done, step_answers, fresh, n)),
  r AS (SELECT * FROM given WHERE same_event OR NOT check_identity),
  -- The rows of espf.event_deliveries the records make; each goes in by one of the two inserts below.
  row_of AS (
  SELECT r.fresh, r.i_event, r.handler, r.state, r.event_type, r.order_key, r.i_account, record_deliveries.instance AS instance,
         r.commit_lsn, r.attempts, r.urls_done, r.last_http_status, r.last_error,
         to_timestamp(r.next_attempt_at / 1000.0) AS next_attempt_at, to_timestamp(r.committed_at / 1000.0) AS committed_at,
         to_timestamp(r.first_attempt_at / 1000.0) AS first_attempt_at, to_timestamp(r.last_attempt_at / 1000.0) AS last_attempt_at,
         to_timestamp(r.finished_at / 1000.0) AS finished_at, coalesce(r.steps_done, 0) AS steps_done, r.step_answers
    FROM r),
  fresh_deliveries AS (
  INSERT INTO espf.event_deliveries
         (i_event, handler, state, event_type, order_key, i_account, instance, commit_lsn, attempts, urls_done, last_http_status,
          last_error, next_attempt_at, committed_at, first_attempt_at, last_attempt_at, finished_at, steps_done, step_answers)
  SELECT o.i_event, o.handler, o.state, o.event_type, o.order_key, o.i_account, o.instance, o.commit_lsn, o.attempts, o.urls_done,
         o.last_http_status, o.last_error, o.next_attempt_at, o.committed_at, o.first_attempt_at, o.last_attempt_at, o.finished_at,
         o.steps_done, o.step_answers
    FROM row_of o WHERE o.fresh),
  deliveries AS (
  INSERT INTO espf.event_deliveries AS d
         (i_event, handler, state, event_type, order_key, i_account, instance, commit_lsn, attempts, urls_done, last_http_status,
          last_error, next_attempt_at, committed_at, first_attempt_at, last_attempt_at, finished_at, steps_done, step_answers)
  SELECT o.i_event, o.handler, o.state, o.event_type, o.order_key, o.i_account, o.instance, o.commit_lsn, o.attempts, o.urls_done,
         o.last_http_status, o.last_error, o.next_attempt_at, o.committed_at, o.first_attempt_at, o.last_attempt_at, o.finished_at,
         o.steps_done, o.step_answers
    FROM row_of o WHERE o.fresh IS NOT TRUE
  ON CONFLICT ON CONSTRAINT event_deliveries_pkey DO UPDATE SET
         state            = excluded.state,
         instance         = excluded.instance,
         attempts         = excluded.attempts,
         urls_done        = excluded.urls_done,
         last_http_status = excluded.last_http_status,
         last_error       = excluded.last_error,
         next_attempt_at  = excluded.next_attempt_at,
         first_attempt_at = coalesce(d.first_attempt_at, excluded.first_attempt_at),
         last_attempt_at  = excluded.last_attempt_at,
         finished_at      = excluded.finished_at,
         steps_done       = excluded.steps_done,
         step_answers     = excluded.step_answers),
  statuses AS (
  INSERT INTO espf.account_provisioning_statuses AS s
         (i_account, handler, status, i_event, event_type, attempts, message, updated_at)
  SELECT DISTINCT ON (r.i_account, r.handler)
         r.i_account, r.handler,
         CASE r.state WHEN 'DELIVERED' THEN 'OK' ELSE r.state END,
         r.i_event, r.event_type, r.attempts,
         CASE r.state WHEN 'DELIVERED' THEN 'HTTP ' || r.last_http_status ELSE r.last_error END,
         now()
    FROM r
   WHERE r.i_account IS NOT NULL AND r.state IN ('DELIVERED', 'RETRY', 'FAILED')
   ORDER BY r.i_account, r.handler, r.n DESC
  ON CONFLICT ON CONSTRAINT account_provisioning_statuses_pkey DO UPDATE SET
         status     = excluded.status,
         i_event    = excluded.i_event,
         event_type = excluded.event_type,
         attempts   = excluded.attempts,
         message    = excluded.message,
         updated_at = excluded.updated_at
  RETURNING 1),
  minutes AS (
  INSERT INTO espf.delivery_minutes AS m (handler, minute, delivered, failed)
  SELECT r.handler, date_trunc('minute', to_timestamp(r.finished_at / 1000.0)),
         count(*) FILTER (WHERE r.state <> 'FAILED'), count(*) FILTER (WHERE r.state = 'FAILED')
    FROM r
   WHERE r.state IN ('DELIVERED', 'DISPATCHED', 'FAILED') AND r.finished_at IS NOT NULL
   GROUP BY 1, 2
  HAVING date_trunc('minute', to_timestamp(r.finished_at / 1000.0)) >= (SELECT s.kept_from FROM espf.delivery_minutes_state s)
   ORDER BY 1, 2
  ON CONFLICT (handler, minute) DO UPDATE
     SET delivered = m.delivered + excluded.delivered, failed = m.failed + excluded.failed)
  SELECT coalesce(array_agg(g.i_event ORDER BY g.n), '{}') FROM given g WHERE NOT g.same_event AND check_identity;
$$;
REVOKE EXECUTE ON FUNCTION espf.record_deliveries(text, boolean, bigint[], text[], text[], text[], text[], bigint[], pg_lsn[], int[], int[],
                                                  int[], text[], float8[], float8[], float8[], float8[], float8[], float8[], int[], jsonb[], boolean[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION espf.record_deliveries(text, boolean, bigint[], text[], text[], text[], text[], bigint[], pg_lsn[], int[], int[],
                                                 int[], text[], float8[], float8[], float8[], float8[], float8[], float8[], int[], jsonb[], boolean[]) TO espf_sender;

-- The same without `fresh` (what espf run sent before 2026-12-07, tenth session;
-- kept so that a running older sender goes on recording during an upgrade): every
-- record by INSERT … ON CONFLICT DO UPDATE.
CREATE OR REPLACE FUNCTION espf.record_deliveries(
  instance text, check_identity boolean,
  i_event bigint[], handler text[], state text[], event_type text[], order_key text[], i_account bigint[],
  commit_lsn pg_lsn[], attempts int[], urls_done int[], last_http_status int[], last_error text[],
  next_attempt_at float8[], committed_at float8[], first_attempt_at float8[], last_attempt_at float8[],
  finished_at float8[], created_at float8[], steps_done int[], step_answers jsonb[])
RETURNS bigint[] LANGUAGE sql AS $$
  SELECT espf.record_deliveries(instance, check_identity, i_event, handler, state, event_type, order_key, i_account,
           commit_lsn, attempts, urls_done, last_http_status, last_error, next_attempt_at, committed_at,
           first_attempt_at, last_attempt_at, finished_at, created_at, steps_done, step_answers, NULL::boolean[]);
$$;
REVOKE EXECUTE ON FUNCTION espf.record_deliveries(text, boolean, bigint[], text[], text[], text[], text[], bigint[], pg_lsn[], int[], int[],
                                                  int[], text[], float8[], float8[], float8[], float8[], float8[], float8[], int[], jsonb[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION espf.record_deliveries(text, boolean, bigint[], text[], text[], text[], text[], bigint[], pg_lsn[], int[], int[],
                                                 int[], text[], float8[], float8[], float8[], float8[], float8[], float8[], int[], jsonb[]) TO espf_sender;

-- The records as a JSON array of objects with those columns and `n`, their
-- order in the batch (what espf run sent before 2026-12-07; kept so that a
-- running older sender goes on recording during an upgrade).
CREATE OR REPLACE FUNCTION espf.record_deliveries(instance text, records json, check_identity boolean)
RETURNS bigint[] LANGUAGE sql AS $$
  SELECT espf.record_deliveries(instance, check_identity,
           array_agg(r.i_event ORDER BY r.n), array_agg(r.handler ORDER BY r.n), array_agg(r.state ORDER BY r.n),
           array_agg(r.event_type ORDER BY r.n), array_agg(r.order_key ORDER BY r.n), array_agg(r.i_account ORDER BY r.n),
           array_agg(r.commit_lsn::pg_lsn ORDER BY r.n), array_agg(r.attempts ORDER BY r.n), array_agg(r.urls_done ORDER BY r.n),
           array_agg(r.last_http_status ORDER BY r.n), array_agg(r.last_error ORDER BY r.n),
           array_agg(r.next_attempt_at ORDER BY r.n), array_agg(r.committed_at ORDER BY r.n),
           array_agg(r.first_attempt_at ORDER BY r.n), array_agg(r.last_attempt_at ORDER BY r.n),
           array_agg(r.finished_at ORDER BY r.n), array_agg(r.created_at ORDER BY r.n),
           array_agg(r.steps_done ORDER BY r.n), array_agg(r.step_answers ORDER BY r.n))
    FROM json_to_recordset(records) AS r(
         i_event bigint, handler text, state text, event_type text, order_key text, i_account bigint,
         commit_lsn text, attempts int, urls_done int, last_http_status int, last_error text,
         next_attempt_at float8, committed_at float8, first_attempt_at float8,
         last_attempt_at float8, finished_at float8, n bigint, created_at float8,
         steps_done int, step_answers jsonb);
$$;

CREATE OR REPLACE FUNCTION espf.record_deliveries(instance text, records json)
RETURNS void LANGUAGE sql AS $$
  SELECT espf.record_deliveries(instance, records, true);
$$;

-- The same with the records as jsonb (what espf run called before 2026-11;
-- kept so that a running older sender goes on recording during an upgrade).
CREATE OR REPLACE FUNCTION espf.record_deliveries(instance text, records jsonb)
RETURNS void LANGUAGE sql AS $$
  SELECT espf.record_deliveries(instance, records::json);
$$;

-- Request steps (migrations/0015_request_steps.sql) added steps_done and
-- step_answers to what these return: a changed result type needs the old
-- function dropped first (once; in this transaction, so no caller sees it missing).
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_proc p WHERE p.pronamespace = 'espf'::regnamespace
                AND p.proname IN ('waiting_deliveries', 'take_requeued') AND NOT ('steps_done' = ANY (p.proargnames))) THEN
    DROP FUNCTION IF EXISTS espf.waiting_deliveries(text[]);
    DROP FUNCTION IF EXISTS espf.take_requeued(text[], int);
    DROP FUNCTION IF EXISTS espf.take_requeued(text[], int, int, int);
  END IF;
END
$$;

-- What an instance must resume after a restart: deliveries recorded as waiting,
-- in stream order, with the events they carry.
CREATE OR REPLACE FUNCTION espf.waiting_deliveries(handlers text[])
RETURNS TABLE (i_event bigint, handler text, state text, event_type text, variables jsonb,
               source_i_event bigint, commit_lsn text, attempts int, urls_done int,
               next_attempt_at timestamptz, committed_at timestamptz, first_attempt_at timestamptz,
               steps_done int, step_answers jsonb)
LANGUAGE sql STABLE AS $$
  SELECT d.i_event, d.handler, d.state, e.event_type, e.variables, e.source_i_event, d.commit_lsn::text,
         d.attempts, d.urls_done, d.next_attempt_at, d.committed_at, d.first_attempt_at,
         d.steps_done, d.step_answers
    FROM espf.event_deliveries d
    JOIN espf.events e ON e.i_event = d.i_event
   WHERE d.handler = ANY (handlers) AND d.state IN ('PENDING', 'RETRY')
   ORDER BY d.handler, d.commit_lsn NULLS FIRST, d.i_event
$$;

-- Takes the deliveries marked `requeued` for these handlers (clearing the mark),
-- with their events, in stream order; of shard `shard` of `shards` only (README "Shards").
CREATE OR REPLACE FUNCTION espf.take_requeued(handlers text[], max_rows int, shard int, shards int)
RETURNS TABLE (i_event bigint, handler text, state text, event_type text, variables jsonb,
               source_i_event bigint, commit_lsn text, attempts int, urls_done int,
               next_attempt_at timestamptz, committed_at timestamptz, first_attempt_at timestamptz,
               steps_done int, step_answers jsonb)
LANGUAGE sql AS $$
  WITH taken AS (
    UPDATE espf.event_deliveries d SET requeued = false
     WHERE (d.i_event, d.handler) IN (
             SELECT x.i_event, x.handler FROM espf.event_deliveries x
               JOIN espf.events xe ON xe.i_event = x.i_event
              WHERE x.requeued AND x.handler = ANY (handlers) AND x.state IN ('PENDING', 'RETRY')
                AND espf.in_shard(xe, shard, shards)
              ORDER BY x.i_event LIMIT max_rows FOR UPDATE OF x SKIP LOCKED)
    RETURNING d.*)
  SELECT t.i_event, t.handler, t.state, e.event_type, e.variables, e.source_i_event, t.commit_lsn::text,
         t.attempts, t.urls_done, t.next_attempt_at, t.committed_at, t.first_attempt_at,
         t.steps_done, t.step_answers
    FROM taken t JOIN espf.events e ON e.i_event = t.i_event
   ORDER BY t.handler, t.commit_lsn NULLS FIRST, t.i_event
$$;

-- Not sharded.
CREATE OR REPLACE FUNCTION espf.take_requeued(handlers text[], max_rows int DEFAULT 10000)
RETURNS TABLE (i_event bigint, handler text, state text, event_type text, variables jsonb,
               source_i_event bigint, commit_lsn text, attempts int, urls_done int,
               next_attempt_at timestamptz, committed_at timestamptz, first_attempt_at timestamptz,
               steps_done int, step_answers jsonb)
LANGUAGE sql AS $$
  SELECT * FROM espf.take_requeued(handlers, max_rows, 0, 1)
$$;
