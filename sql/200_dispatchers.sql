-- Dispatcher rules (espf.dispatcher_rules, docs/dba.md "espf.dispatcher_rules"):
-- a row says that the dispatcher `handler` consumes `event_type` and fans each
-- such source event out with `query`, a SELECT over any tables (the operator's
-- own schema too) in which `source` is the source event's row of espf.events.
-- It returns one row per event to produce:
--
--   event_type  text     the produced event's type (produced only while enabled)
--   i_env       integer  its i_env
--   i_account   bigint   the account it is about (null: not an account's event)
--   variables   jsonb    its own variables; espf adds i_account, source_i_event,
--                        i_event, i_env and event_time
--
-- Each row is compiled, when it is written, into one function
-- espf.dispatch_<slug>(source_events bigint[]) that runs the query for a batch of
-- source events (espf.dispatch, sql/210_dispatch.sql, calls it) and locks the
-- rows the query reads (FOR NO KEY UPDATE), in (source event, i_account)
-- order, before espf.dispatch takes their i_event: a produced event of an
-- account gets its i_event while holding that account's row lock, as a
-- captured one does (espf.lock_account, sql/010_functions.sql), so that for any
-- one account i_event follows commit order. The row is checked first (the
-- query parses, returns those columns with those types, can be locked) and a
-- bad one is refused in one line naming it, changing nothing.
--
-- The function runs with its owner's (the espf owner's) rights, as the
-- dispatcher views did: `espf run` needs no grant on the tables a rule reads.
-- So only the espf owner writes dispatcher rules (not espf_admin: a query runs
-- with the owner's rights).

-- The variables every event carries, which a produced event gets afresh.
CREATE OR REPLACE FUNCTION espf.own_variables(v jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT v - '{i_event,i_env,event_time,source_i_event}'::text[]
$$;

-- A produced event's variables before espf.dispatch adds i_event, i_env and
-- event_time: the rule's, its i_account and the source event's i_event.
CREATE OR REPLACE FUNCTION espf.dispatched_variables(variables jsonb, i_account bigint, source_i_event bigint)
RETURNS jsonb LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT variables
         || CASE WHEN i_account IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('i_account', i_account) END
         || jsonb_build_object('source_i_event', source_i_event)
$$;

-- ── names ──────────────────────────────────────────────────────────────────
-- A dispatcher rule is named '<handler>: <event_type>'; its function is
-- espf.dispatch_<slug> (espf.rule_slug, sql/025_event_rules.sql).
CREATE OR REPLACE FUNCTION espf.dispatcher_rule_name(handler text, event_type text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT handler || ': ' || event_type $$;

CREATE OR REPLACE FUNCTION espf.dispatcher_function_name(handler text, event_type text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 'dispatch_' || espf.rule_slug(espf.dispatcher_rule_name(handler, event_type)) $$;

-- Every refusal: 'espf.dispatcher_rules: rule "<handler>: <type>": <column>: <problem>'.
CREATE OR REPLACE FUNCTION espf.refuse_dispatcher_rule(r espf.dispatcher_rules, col text, problem text, code text DEFAULT '23514')
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'espf.dispatcher_rules: rule "%": %: %', espf.dispatcher_rule_name(r.handler, r.event_type), col, problem
    USING ERRCODE = code, SCHEMA = 'espf', TABLE = 'dispatcher_rules', COLUMN = col;
END
$$;

-- ── the check ──────────────────────────────────────────────────────────────
-- The columns a rule's query returns, and the types each may have.
CREATE OR REPLACE FUNCTION espf.dispatcher_query_columns()
RETURNS TABLE (name text, types text[], shown text) LANGUAGE sql IMMUTABLE AS $$
  VALUES ('event_type', '{text,"character varying"}'::text[], 'text'),
         ('i_env',      '{integer,smallint,bigint}',              'integer'),
         ('i_account',  '{bigint,integer,smallint}',              'bigint'),
         ('variables',  '{jsonb}',                                'jsonb')
$$;

-- Checks a rule; raises, naming the rule and the problem, when it does not
-- compile. Parses its query (never runs it) through a temporary view.
CREATE OR REPLACE FUNCTION espf.check_dispatcher_rule(r espf.dispatcher_rules)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  kind    text;
  c       record;
  typ     text;
  problem text;
BEGIN
  SELECT h.kind INTO kind FROM espf.handlers h WHERE h.name = r.handler;
  IF kind IS NULL THEN
    PERFORM espf.refuse_dispatcher_rule(r, 'handler', format('unknown handler %L (not a row of espf.handlers)', r.handler), '23503');
  ELSIF kind <> 'dispatcher' THEN
    PERFORM espf.refuse_dispatcher_rule(r, 'handler', format('%s is an %s handler, not a dispatcher', r.handler, kind));
  END IF;
  IF r.event_type IS NULL OR NOT EXISTS (SELECT 1 FROM espf.event_types t WHERE t.name = r.event_type) THEN
    PERFORM espf.refuse_dispatcher_rule(r, 'event_type',
      format('unknown event type %L (not a row of espf.event_types: insert the type first)', r.event_type), '23503');
  END IF;
  IF r.event_type ~ '[$\r\n]' THEN
    PERFORM espf.refuse_dispatcher_rule(r, 'event_type', 'a type name with ''$'' or a line break cannot be compiled');
  END IF;
  -- One SELECT that stays inside the parentheses it is placed in (the check of
  -- a capture rule's expressions, whose refusal is reworded for this table).
  BEGIN
    PERFORM espf.rule_expression_check('', 'query', r.query);
  EXCEPTION WHEN check_violation THEN
    GET STACKED DIAGNOSTICS problem = MESSAGE_TEXT;
    PERFORM espf.refuse_dispatcher_rule(r, 'query', regexp_replace(problem, '^espf\.event_rules: rule "": query: ', ''));
  END;
  BEGIN
    EXECUTE format('CREATE TEMP VIEW espf_dispatcher_query AS SELECT q.* FROM espf.events source CROSS JOIN LATERAL (%s) q FOR NO KEY UPDATE OF q',
                   r.query);
  EXCEPTION WHEN OTHERS THEN
    PERFORM espf.refuse_dispatcher_rule(r, 'query', SQLERRM, SQLSTATE);
  END;
  FOR c IN SELECT * FROM espf.dispatcher_query_columns() LOOP
    SELECT format_type(a.atttypid, a.atttypmod) INTO typ
      FROM pg_attribute a WHERE a.attrelid = 'pg_temp.espf_dispatcher_query'::regclass AND a.attname = c.name;
    IF typ IS NULL THEN
      problem := format('returns no column %s (it returns event_type text, i_env integer, i_account bigint and variables jsonb)', c.name);
    ELSIF NOT typ = ANY (c.types) THEN
      problem := format('column %s must be %s, is %s', c.name, c.shown, typ);
    END IF;
    IF problem IS NOT NULL THEN
      DROP VIEW pg_temp.espf_dispatcher_query;
      PERFORM espf.refuse_dispatcher_rule(r, 'query', problem, CASE WHEN typ IS NULL THEN '42703' ELSE '42804' END);
    END IF;
  END LOOP;
  DROP VIEW pg_temp.espf_dispatcher_query;
END
$$;

-- ── compiling ──────────────────────────────────────────────────────────────
-- The function a rule compiles to. It returns the rows of its query for the
-- source events of its type among `source_events` whose produced type is
-- enabled, with the source's target (espf.events.target_handler), their rows
-- locked, in (source event, i_account) order: espf.dispatch gives them their
-- i_event in the order they come.
CREATE OR REPLACE FUNCTION espf.dispatcher_rule_sql(r espf.dispatcher_rules)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT concat(
    -- (names on one line: a line break in a name must not end the comment)
    format(E'-- dispatcher rule %s (generated from espf.dispatcher_rules: change the row, not this)\n',
           regexp_replace(espf.dispatcher_rule_name(r.handler, r.event_type), '[\r\n]', ' ', 'g')),
    format(E'CREATE OR REPLACE FUNCTION espf.%I(source_events bigint[])\n', espf.dispatcher_function_name(r.handler, r.event_type)),
    E'RETURNS TABLE (source_i_event bigint, event_type text, i_env int, i_account bigint, variables jsonb, target_handler text)\n',
    E'LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $espf_rule$\n',
    E'  SELECT source.i_event, q.event_type::text, q.i_env::int, q.i_account::bigint, q.variables, source.target_handler\n',
    format(E'    FROM espf.events source CROSS JOIN LATERAL (%s) q\n', r.query),
    E'    JOIN espf.event_types t ON t.name = q.event_type AND t.enabled\n',
    format(E'   WHERE source.i_event = ANY (source_events) AND source.event_type = %L\n', r.event_type),
    E'   ORDER BY source.i_event, q.i_account\n',
    E'     FOR NO KEY UPDATE OF q\n',
    E'$espf_rule$;\n',
    format(E'REVOKE EXECUTE ON FUNCTION espf.%I(bigint[]) FROM PUBLIC;\n', espf.dispatcher_function_name(r.handler, r.event_type)),
    format(E'GRANT EXECUTE ON FUNCTION espf.%I(bigint[]) TO espf_sender;\n', espf.dispatcher_function_name(r.handler, r.event_type)))
$$;

CREATE OR REPLACE FUNCTION espf.compile_dispatcher_rule(r espf.dispatcher_rules)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  PERFORM espf.check_dispatcher_rule(r);
  BEGIN
    -- (dropped first: a function made by an earlier release may return other columns)
    EXECUTE format('DROP FUNCTION IF EXISTS espf.%I(bigint[])', espf.dispatcher_function_name(r.handler, r.event_type));
    EXECUTE espf.dispatcher_rule_sql(r);
  EXCEPTION WHEN OTHERS THEN
    PERFORM espf.refuse_dispatcher_rule(r, 'query', SQLERRM, SQLSTATE);
  END;
END
$$;

-- The trigger on espf.dispatcher_rules (its owner's rights: it creates functions
-- in espf). BEFORE: the refusals come before the foreign keys' (they name the rule).
CREATE OR REPLACE FUNCTION espf.dispatcher_rules_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  -- A deleted or renamed rule's function goes (NEW is null for a DELETE).
  IF TG_OP <> 'INSERT' AND (OLD.handler, OLD.event_type) IS DISTINCT FROM (NEW.handler, NEW.event_type) THEN
    EXECUTE format('DROP FUNCTION IF EXISTS espf.%I(bigint[])', espf.dispatcher_function_name(OLD.handler, OLD.event_type));
  END IF;
  IF TG_OP <> 'DELETE' THEN
    PERFORM espf.compile_dispatcher_rule(NEW);
  END IF;
  RETURN coalesce(NEW, OLD);
END
$$;
REVOKE EXECUTE ON FUNCTION espf.dispatcher_rules_changed() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION espf.compile_dispatcher_rule(espf.dispatcher_rules) FROM PUBLIC;

CREATE OR REPLACE TRIGGER compile_dispatcher_rule BEFORE INSERT OR UPDATE OR DELETE ON espf.dispatcher_rules
  FOR EACH ROW EXECUTE FUNCTION espf.dispatcher_rules_changed();

-- Checks every dispatcher rule again without changing anything; one row per rule
-- that no longer compiles (a table or column its query reads was dropped or
-- renamed), or whose function is missing. espf.check_rules (sql/025_event_rules.sql)
-- returns these rows after the capture rules'.
CREATE OR REPLACE FUNCTION espf.check_dispatcher_rules()
RETURNS TABLE (name text, problem text, code text) LANGUAGE plpgsql AS $$
DECLARE
  r espf.dispatcher_rules;
BEGIN
  FOR r IN SELECT * FROM espf.dispatcher_rules d ORDER BY d.handler, d.event_type LOOP
    BEGIN
      PERFORM espf.check_dispatcher_rule(r);
      IF to_regprocedure(format('espf.%I(bigint[])', espf.dispatcher_function_name(r.handler, r.event_type))) IS NULL THEN
        PERFORM espf.refuse_dispatcher_rule(r, 'rule', format('its function espf.%s is missing (rewrite the row to compile it again)',
                                                           espf.dispatcher_function_name(r.handler, r.event_type)), '55000');
      END IF;
    EXCEPTION WHEN OTHERS THEN
      name := espf.dispatcher_rule_name(r.handler, r.event_type); problem := SQLERRM; code := SQLSTATE;
      RETURN NEXT;
    END;
  END LOOP;
END
$$;

-- ── the built-in dispatchers ───────────────────────────────────────────────
-- What the commercial system's three dispatchers do, on the reference model.
-- Each view of the same name shows what its rule produces for every event of
-- espf.events (for reading; espf.dispatch runs the rows of espf.dispatcher_rules).
--
-- CustomerToAccountsDispatcher (espf.customer_to_accounts)
--   Customer/Blocked, Customer/Unblocked     -> Account/Blocked, Account/Unblocked for every
--                                               account of the customer not blocked on its own
--   Customer/ZeroAvailableFunds, …FundsAppear -> the same for the customer's subordinate accounts
--   Customer/Status/Suspend, …/Unsuspend      -> Account/Status/… for every account of the customer
--   Customer/ServiceAttribute/Changed         -> Account/ServiceAttribute/Changed for every account
-- ProductToAccountsDispatcher (espf.product_to_accounts)
--   Product/ServiceAttribute/Changed -> Account/ServiceAttribute/Changed for every account on the product
-- ServiceAttributeDispatcher (espf.service_attribute_to_owner)
--   ServiceAttribute/Changed -> Account/, Customer/ or Product/ServiceAttribute/Changed
--                               for the owner (i_account, i_customer or i_product)
CREATE OR REPLACE FUNCTION espf.shipped_dispatchers()
RETURNS TABLE (handler text, view_name text, consumes text[], query text) LANGUAGE sql IMMUTABLE AS $fn$
VALUES
  ('CustomerToAccountsDispatcher', 'customer_to_accounts',
   '{Customer/Blocked,Customer/Unblocked,Customer/ZeroAvailableFunds,Customer/AvailableFundsAppear,Customer/Status/Suspend,Customer/Status/Unsuspend,Customer/ServiceAttribute/Changed}'::text[],
   $q$SELECT 'Account/' || substr(source.event_type, 10) AS event_type, a.i_env, a.i_account,
       espf.own_variables(source.variables) || jsonb_build_object('i_customer', a.i_customer) AS variables
  FROM billing.account a
 WHERE a.i_customer = (source.variables ->> 'i_customer')::bigint
   AND CASE WHEN source.event_type IN ('Customer/Blocked', 'Customer/Unblocked') THEN NOT a.blocked
            WHEN source.event_type IN ('Customer/ZeroAvailableFunds', 'Customer/AvailableFundsAppear') THEN a.balance_control = 'subordinate'
            ELSE source.event_type IN ('Customer/Status/Suspend', 'Customer/Status/Unsuspend', 'Customer/ServiceAttribute/Changed') END$q$),
  ('ProductToAccountsDispatcher', 'product_to_accounts', '{Product/ServiceAttribute/Changed}',
   $q$SELECT 'Account/ServiceAttribute/Changed' AS event_type, a.i_env, a.i_account,
       espf.own_variables(source.variables) || jsonb_build_object('i_product', a.i_product) AS variables
  FROM billing.account a
 WHERE a.i_product = (source.variables ->> 'i_product')::bigint$q$),
  ('ServiceAttributeDispatcher', 'service_attribute_to_owner', '{ServiceAttribute/Changed}',
   $q$SELECT initcap(source.variables ->> 'owner_type') || '/ServiceAttribute/Changed' AS event_type,
       (source.variables ->> 'i_env')::int AS i_env,
       CASE WHEN source.variables ->> 'owner_type' = 'account' THEN (source.variables ->> 'owner_id')::bigint END AS i_account,
       espf.own_variables(source.variables)
         || jsonb_build_object('i_' || (source.variables ->> 'owner_type'), (source.variables ->> 'owner_id')::bigint) AS variables$q$)
$fn$;

-- The views, made from the rules above.
DO $$
DECLARE
  d record;
BEGIN
  FOR d IN SELECT * FROM espf.shipped_dispatchers() LOOP
    EXECUTE format($v$
      CREATE OR REPLACE VIEW espf.%I AS
      SELECT source.i_event AS source_i_event, q.event_type::text AS event_type, q.i_env::int AS i_env,
             espf.dispatched_variables(q.variables, q.i_account::bigint, source.i_event) AS variables
        FROM espf.events source CROSS JOIN LATERAL (%s) q
       WHERE source.event_type = ANY (%L::text[])$v$, d.view_name, d.query, d.consumes);
  END LOOP;
END
$$;

-- Brings the built-in dispatchers' rows up to the definitions above: adds a
-- missing one (while its dispatcher exists), replaces one unchanged since the
-- last migrate (or, on the first migrate with rules as rows, one that still
-- read its view), keeps one a DBA changed. Then compiles every rule again (this
-- release's function), keeping a rule that no longer compiles as it is (espf
-- rule check names it). Returns the names of the built-in rules it kept.
CREATE OR REPLACE FUNCTION espf.install_builtin_dispatcher_rules() RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
  d    record;
  r    espf.dispatcher_rules;
  kept text[] := '{}';
BEGIN
  FOR d IN SELECT s.handler, s.view_name, c.event_type, s.query
             FROM espf.shipped_dispatchers() s, unnest(s.consumes) c(event_type)
            WHERE EXISTS (SELECT 1 FROM espf.handlers h WHERE h.name = s.handler AND h.kind = 'dispatcher') LOOP
    SELECT * INTO r FROM espf.dispatcher_rules x WHERE x.handler = d.handler AND x.event_type = d.event_type;
    IF r.handler IS NULL THEN
      INSERT INTO espf.dispatcher_rules (handler, event_type, query, shipped_query) VALUES (d.handler, d.event_type, d.query, d.query);
    ELSIF r.query = d.query THEN
      UPDATE espf.dispatcher_rules x SET shipped_query = d.query
       WHERE x.handler = d.handler AND x.event_type = d.event_type AND x.shipped_query IS DISTINCT FROM d.query;
    ELSIF r.query = r.shipped_query
       OR (r.shipped_query IS NULL AND r.query = format('SELECT v.event_type, v.i_env, (v.variables ->> ''i_account'')::bigint AS i_account, v.variables FROM espf.%I v WHERE v.source_i_event = source.i_event', d.view_name)) THEN
      UPDATE espf.dispatcher_rules x SET query = d.query, shipped_query = d.query
       WHERE x.handler = d.handler AND x.event_type = d.event_type;
    ELSE
      kept := kept || espf.dispatcher_rule_name(d.handler, d.event_type);
      UPDATE espf.dispatcher_rules x SET shipped_query = d.query
       WHERE x.handler = d.handler AND x.event_type = d.event_type AND x.shipped_query IS DISTINCT FROM d.query;
    END IF;
  END LOOP;
  FOR r IN SELECT * FROM espf.dispatcher_rules x ORDER BY x.handler, x.event_type LOOP
    BEGIN
      PERFORM espf.compile_dispatcher_rule(r);
    EXCEPTION WHEN OTHERS THEN
      RAISE WARNING '%', SQLERRM;
    END;
  END LOOP;
  RETURN kept;
END
$$;
REVOKE EXECUTE ON FUNCTION espf.install_builtin_dispatcher_rules() FROM PUBLIC;

SELECT espf.install_builtin_dispatcher_rules();
