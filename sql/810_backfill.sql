-- Backfill (`espf backfill <rule>`, docs/dba.md "Backfill"): emits a rule's event for
-- rows that already exist, their current values as NEW (OLD is a row of nulls; the
-- rule's condition, a transition, is not applied: --where chooses the rows). It
-- goes in batches in key order, each batch one short transaction that locks the
-- batch's rows (FOR NO KEY UPDATE), writes their events and records its progress
-- in espf.backfills together: a crash loses the batch and its progress at once,
-- so a resumed backfill emits every row exactly once. A live write of a row waits
-- for the batch that holds it (or the batch waits for the write): an account's
-- snapshot is never committed after a later live event of the same account.

-- The single-column primary key of a table (null when it has none or several).
CREATE OR REPLACE FUNCTION espf.backfill_key(source regclass) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT min(a.attname)::text
    FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
   WHERE i.indrelid = source AND i.indisprimary
  HAVING count(*) = 1
$$;

-- The rule named `rule_name` if it can be backfilled now; raises why not (one line).
CREATE OR REPLACE FUNCTION espf.backfill_rule(rule_name text) RETURNS espf.event_rules
LANGUAGE plpgsql AS $$
DECLARE
  r espf.event_rules;
BEGIN
  SELECT * INTO r FROM espf.event_rules e WHERE e.name = rule_name;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'backfill: unknown rule % (espf rule list shows the rules)', quote_literal(rule_name) USING ERRCODE = '22023';
  END IF;
  PERFORM espf.backfill_check(r);
  RETURN r;
END
$$;

-- Who would receive a backfill of rule `rule_name` sent to every handler: the
-- handlers subscribed to its type (a dispatcher passes it on to the handlers
-- subscribed to what it produces), enabled or not. Raises as espf.backfill_rule.
-- `espf backfill` without --handler names them and asks for --all-handlers.
CREATE OR REPLACE FUNCTION espf.backfill_receivers(rule_name text)
RETURNS TABLE (event_type text, receivers jsonb) LANGUAGE plpgsql AS $$
DECLARE
  r espf.event_rules := espf.backfill_rule(rule_name);
BEGIN
  RETURN QUERY
    SELECT r.event_type,
           coalesce(jsonb_agg(jsonb_build_object('handler', h.name, 'kind', h.kind, 'enabled', h.enabled)
                              ORDER BY h.enabled DESC, h.kind DESC, h.name), '[]')
      FROM espf.subscriptions s JOIN espf.handlers h ON h.name = s.handler
     WHERE s.event_type = r.event_type;
END
$$;

-- Why a backfill of rule r cannot go to handler `target` only (raises, one line):
-- the handler must exist, be an enabled http handler, and get the rule's events:
-- subscribed to its type, or to what a dispatcher subscribed to its type fans it
-- out to (the dispatched events keep the target, sql/210_dispatch.sql).
CREATE OR REPLACE FUNCTION espf.backfill_target_check(r espf.event_rules, target text) RETURNS void
LANGUAGE plpgsql STABLE AS $$
DECLARE
  hkind    text;     -- null: no such handler
  henabled boolean;
BEGIN
  SELECT x.kind, x.enabled INTO hkind, henabled FROM espf.handlers x WHERE x.name = target;
  IF hkind IS NULL THEN
    RAISE EXCEPTION 'backfill: unknown handler % (espf status lists the handlers)', quote_literal(target) USING ERRCODE = '22023';
  END IF;
  IF hkind <> 'http' THEN
    RAISE EXCEPTION 'backfill: handler % is a dispatcher: name the http handler that must receive the events', quote_literal(target)
      USING ERRCODE = '22023';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM espf.subscriptions s WHERE s.handler = target AND s.event_type = r.event_type)
     AND NOT EXISTS (SELECT 1 FROM espf.subscriptions s JOIN espf.handlers d ON d.name = s.handler AND d.kind = 'dispatcher'
                      WHERE s.event_type = r.event_type) THEN
    RAISE EXCEPTION 'backfill: handler % is not subscribed to % (espf handler sub % %)',
      quote_literal(target), r.event_type, target, r.event_type USING ERRCODE = '22023';
  END IF;
  IF NOT henabled THEN
    RAISE EXCEPTION 'backfill: handler % is disabled: enable it first (espf handler enable %)', quote_literal(target), target
      USING ERRCODE = '55000';
  END IF;
END
$$;

-- Starts a backfill of a rule: checks it (and its target handler, if one is given)
-- and records it with its pace ('yield', 'rate' with rate_rows_s, or 'fast':
-- src/rules/backfill-pace.ts); returns its id.
DROP FUNCTION IF EXISTS espf.start_backfill(text, text, int);
DROP FUNCTION IF EXISTS espf.start_backfill(text, text, int, text);
CREATE OR REPLACE FUNCTION espf.start_backfill(rule_name text, where_sql text, batch_size int, handler_name text,
                                               pace text DEFAULT 'yield', rate_rows_s int DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  r     espf.event_rules;
  key   text;
  total bigint;
  id    bigint;
BEGIN
  r := espf.backfill_rule(rule_name);
  IF handler_name IS NOT NULL THEN
    PERFORM espf.backfill_target_check(r, handler_name);
  END IF;
  key := espf.backfill_key(r.source);
  IF where_sql IS NOT NULL THEN
    PERFORM espf.rule_expression_check(rule_name, '--where', where_sql);
  END IF;
  IF batch_size IS NULL OR batch_size < 1 THEN
    RAISE EXCEPTION 'backfill: the batch size must be at least 1' USING ERRCODE = '22023';
  END IF;
  IF pace IS NULL OR pace NOT IN ('yield', 'rate', 'fast') THEN
    RAISE EXCEPTION 'backfill: unknown pace % (yield, rate or fast)', coalesce(quote_literal(pace), 'null') USING ERRCODE = '22023';
  END IF;
  IF (pace = 'rate') <> (rate_rows_s IS NOT NULL) OR rate_rows_s NOT BETWEEN 1 AND 10000000 THEN
    RAISE EXCEPTION 'backfill: a rate (from 1 to 10000000 rows a second) goes with the pace rate only, not % with rate %',
      pace, coalesce(rate_rows_s::text, 'null') USING ERRCODE = '22023';
  END IF;
  EXECUTE format('SELECT count(*) FROM %s AS new WHERE %s', r.source, coalesce(where_sql, 'true')) INTO total;
  INSERT INTO espf.backfills (rule, event_type, source, key_column, where_sql, batch_size, rows_total, target_handler, pace, rate_rows_s)
  VALUES (r.name, r.event_type, r.source::text, key, where_sql, batch_size, total, handler_name, start_backfill.pace, start_backfill.rate_rows_s)
  RETURNING backfills.id INTO id;
  RETURN id;
END
$$;

-- Why a rule cannot be backfilled now (raises), else how its variables are
-- written ('jsonb' or 'jsonb[]', see espf.check_rule).
CREATE OR REPLACE FUNCTION espf.backfill_check(r espf.event_rules) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
  IF NOT coalesce((SELECT t.enabled FROM espf.event_types t WHERE t.name = r.event_type), false) THEN
    RAISE EXCEPTION 'backfill: rule % produces %, which is disabled: enable it first (espf type enable %)',
      quote_literal(r.name), r.event_type, r.event_type USING ERRCODE = '55000';
  END IF;
  IF r.operations = '{DELETE}' THEN
    RAISE EXCEPTION 'backfill: rule % is a DELETE rule: existing rows have nothing to emit', quote_literal(r.name)
      USING ERRCODE = '22023';
  END IF;
  IF espf.backfill_key(r.source) IS NULL THEN
    RAISE EXCEPTION 'backfill: % has no single-column primary key to go through it in order', r.source
      USING ERRCODE = '22023';
  END IF;
  RETURN espf.check_rule(r);
END
$$;

-- One batch of a backfill, in the caller's transaction: the next batch_limit rows
-- (null: the backfill's batch_size) after last_key (locked), their events, the
-- progress. Returns the rows done in this batch (0 = finished; the backfill is
-- then marked done), the milliseconds its locking statement took (waits for
-- billing's row locks included: src/rules/backfill-pace.ts tells a lock wait from
-- a slow machine by it), and the other client sessions, but espf's own, running a
-- statement when it ends (billing at work, in any database of the server; -1 when
-- this role may not see other roles' sessions). `vtype` is what espf.backfill_check returned when the run began (the
-- rule is then not parsed again for every batch); null: check it now.
DROP FUNCTION IF EXISTS espf.backfill_batch(bigint);
DROP FUNCTION IF EXISTS espf.backfill_batch(bigint, text);
CREATE OR REPLACE FUNCTION espf.backfill_batch(backfill_id bigint, vtype text DEFAULT NULL, batch_limit int DEFAULT NULL)
RETURNS TABLE (rows_done int, events int, last_key text, lock_ms float8, active_sessions int) LANGUAGE plpgsql AS $$
DECLARE
  b     espf.backfills;
  r     espf.event_rules;
  ktype text;
  stmt  text;
  keys  text[];
  t0    timestamptz;
BEGIN
  SELECT * INTO b FROM espf.backfills x WHERE x.id = backfill_id FOR UPDATE;
  SELECT * INTO r FROM espf.event_rules e WHERE e.name = b.rule;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'backfill: rule % no longer exists', quote_literal(b.rule) USING ERRCODE = '22023';
  END IF;
  IF vtype IS NULL THEN
    vtype := espf.backfill_check(r);
  ELSIF NOT coalesce((SELECT t.enabled FROM espf.event_types t WHERE t.name = r.event_type), false) THEN
    PERFORM espf.backfill_check(r);  -- raises: the type was disabled meanwhile
  END IF;
  SELECT format_type(a.atttypid, a.atttypmod) INTO ktype
    FROM pg_attribute a WHERE a.attrelid = r.source AND a.attname = b.key_column;
  -- The batch's keys, locked, in key order, in a statement of their own. The
  -- statement that reads the rows comes after it and so takes a newer snapshot
  -- (READ COMMITTED, a VOLATILE function): a billing write that held a row of the
  -- batch committed before the lock was granted, and a read in the locking
  -- statement itself would still see the row as it was before that write (its
  -- snapshot predates the wait), so the snapshot event would carry values older
  -- than a live event already committed for the account.
  t0 := clock_timestamp();
  EXECUTE format($q$
    SELECT coalesce(array_agg(k::text ORDER BY k), '{}') FROM (
      SELECT new.%1$I AS k FROM %2$s AS new
       WHERE (%3$L::%4$s IS NULL OR new.%1$I > %3$L::%4$s) AND (%5$s)
       ORDER BY new.%1$I LIMIT %6$s FOR NO KEY UPDATE OF new) keys$q$,
    b.key_column, r.source, b.last_key, ktype, coalesce(b.where_sql, 'true'), coalesce(batch_limit, b.batch_size))
    INTO keys;
  lock_ms := extract(epoch FROM clock_timestamp() - t0) * 1000;
  IF cardinality(keys) = 0 THEN
    rows_done := 0;
    events := 0;
  ELSE
    -- src: NEW = the row, OLD = nulls; i_env (which may lock an account) is
    -- evaluated before the i_event is taken.
    stmt := format($q$
      WITH src AS MATERIALIZED (
        SELECT new.%1$I AS k, (%3$s)::int AS env, (%4$s) AS v
          FROM %2$s AS new LEFT JOIN %2$s AS old ON false
         WHERE new.%1$I = ANY ($1::%7$s[])  -- an index scan (a join to a list was planned as a scan of the table)
         ORDER BY new.%1$I),
      items AS MATERIALIZED (
        SELECT s.k, s.env, e.v, e.n FROM src s, %5$s
         WHERE e.v IS NOT NULL ORDER BY s.k, e.n),
      numbered AS MATERIALIZED (
        SELECT nextval('espf.events_i_event_seq') AS ev, i.env, i.v FROM items i),
      ins AS (
        INSERT INTO espf.events (i_event, event_type, variables, target_handler)
        SELECT n.ev, %6$L, jsonb_build_object('i_env', n.env, 'event_time', t.event_time) || n.v || jsonb_build_object('i_event', n.ev), $2
          FROM numbered n, (SELECT espf.event_time() AS event_time) t  -- one time for the batch (one transaction)
        RETURNING 1)
      SELECT (SELECT count(*) FROM ins)::int$q$,
      b.key_column, r.source, r.i_env, r.variables,
      CASE WHEN vtype = 'jsonb[]' THEN 'unnest(s.v) WITH ORDINALITY AS e(v, n)' ELSE 'LATERAL (SELECT s.v, 1) AS e(v, n)' END,
      r.event_type, ktype);
    EXECUTE stmt INTO events USING keys, b.target_handler;
    rows_done := cardinality(keys);
    last_key := keys[cardinality(keys)];
  END IF;
  IF rows_done = 0 THEN
    UPDATE espf.backfills x SET state = 'done', finished_at = now(), updated_at = now(), last_error = NULL WHERE x.id = backfill_id;
    last_key := b.last_key;
  ELSE
    UPDATE espf.backfills x
       SET last_key = backfill_batch.last_key, rows_done = x.rows_done + backfill_batch.rows_done,
           events = x.events + backfill_batch.events, state = 'running', updated_at = now()
     WHERE x.id = backfill_id;
  END IF;
  -- A session of another role shows a null state unless this role may read all statistics.
  SELECT CASE WHEN bool_or(a.state IS NULL) THEN -1 ELSE count(*) FILTER (WHERE a.state = 'active') END INTO active_sessions
    FROM pg_stat_activity a
   WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid() AND a.application_name NOT LIKE 'espf%';
  RETURN NEXT;
END
$$;

-- Backfills, latest first, as `espf status` shows them (target_handler: its target, null: all handlers).
CREATE OR REPLACE VIEW espf.report_backfills AS
SELECT id, rule, event_type, state, rows_done, rows_total, events, last_key, batch_size, where_sql,
       started_at, updated_at, finished_at, last_error, target_handler
  FROM espf.backfills;
