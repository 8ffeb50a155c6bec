-- Event rules (espf.event_rules, docs/dba.md "Event rules"): each rule row is
-- compiled into one AFTER … FOR EACH ROW trigger on its source table and one
-- PL/pgSQL trigger function, both created, replaced or dropped by the trigger on
-- espf.event_rules in the transaction that writes the row.
--
-- The generated trigger's WHEN clause is the rule's condition; its function
-- takes i_event from the sequence and writes the outbox row in one INSERT whose
-- variables are one jsonb_build_object (the rule's own arguments and the common
-- variables together), as the hand-written capture triggers did: a generated
-- rule costs what a hand-written trigger cost (see "Cost of capture" in
-- sql/010_functions.sql).
--
-- Compiling never runs a rule's expressions: they are parsed (CREATE TRIGGER,
-- a temporary view for their types) but run only inside billing writes, with
-- the rights of the role that writes. The compiler itself runs with its owner's
-- rights (it creates triggers), so each expression is first checked to be one
-- expression that cannot end the text it is placed in (rule_expression_check).

-- ── names ──────────────────────────────────────────────────────────────────
-- A rule's trigger is espf_<slug>, its function espf.rule_<slug>: the rule's
-- name in lower case with every run of other characters as '_', cut to 40
-- characters, then 8 hex digits of its md5 (distinct names never share a
-- trigger). Triggers on one table fire in name order.
CREATE OR REPLACE FUNCTION espf.rule_slug(rule_name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT left(trim(both '_' FROM lower(regexp_replace(rule_name, '[^A-Za-z0-9]+', '_', 'g'))), 40)
         || '_' || left(md5(rule_name), 8)
$$;

CREATE OR REPLACE FUNCTION espf.rule_trigger_name(rule_name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 'espf_' || espf.rule_slug(rule_name) $$;

CREATE OR REPLACE FUNCTION espf.rule_function_name(rule_name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 'rule_' || espf.rule_slug(rule_name) $$;

-- ── refusals ───────────────────────────────────────────────────────────────
-- Every refusal: 'espf.event_rules: rule "<name>": <column>: <problem>', with
-- SQLSTATE 23514 (check_violation), 23503 (an unknown type) or the code of the
-- underlying PostgreSQL error (an unknown column: 42703, …).
CREATE OR REPLACE FUNCTION espf.refuse_rule(rule_name text, col text, problem text, code text DEFAULT '23514')
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'espf.event_rules: rule "%": %: %', rule_name, col, problem
    USING ERRCODE = code, SCHEMA = 'espf', TABLE = 'event_rules', COLUMN = col;
END
$$;

-- One SQL expression that stays one expression wherever it is placed between
-- parentheses: no ';', no comment, no dollar quoting, parentheses balanced.
-- Returns the text with its string literals and quoted identifiers blanked out
-- (for the OLD / NEW checks), or raises naming the rule and the column.
CREATE OR REPLACE FUNCTION espf.rule_expression_check(rule_name text, col text, expr text)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  n     int := length(expr);
  i     int := 1;
  c     text;
  depth int := 0;
  res   text := '';
  esc   boolean;
BEGIN
  IF expr IS NULL OR btrim(expr) = '' THEN
    PERFORM espf.refuse_rule(rule_name, col, 'empty expression');
  END IF;
  WHILE i <= n LOOP
    c := substr(expr, i, 1);
    IF c = '''' THEN
      -- a string literal; E'…' strings treat backslash as an escape
      esc := i > 1 AND lower(substr(expr, i - 1, 1)) = 'e'
             AND (i = 2 OR substr(expr, i - 2, 1) !~ '[A-Za-z0-9_]');
      i := i + 1;
      LOOP
        IF i > n THEN
          PERFORM espf.refuse_rule(rule_name, col, 'unterminated string literal');
        END IF;
        c := substr(expr, i, 1);
        IF esc AND c = '\' THEN
          i := i + 2;
        ELSIF c = '''' AND substr(expr, i + 1, 1) = '''' THEN
          i := i + 2;
        ELSIF c = '''' THEN
          EXIT;
        ELSE
          i := i + 1;
        END IF;
      END LOOP;
      res := res || ''' ''';
    ELSIF c = '"' THEN
      i := i + 1;
      LOOP
        IF i > n THEN
          PERFORM espf.refuse_rule(rule_name, col, 'unterminated quoted identifier');
        END IF;
        c := substr(expr, i, 1);
        IF c = '"' AND substr(expr, i + 1, 1) = '"' THEN
          i := i + 2;
        ELSIF c = '"' THEN
          EXIT;
        ELSE
          i := i + 1;
        END IF;
      END LOOP;
      res := res || '"q"';
    ELSIF c = ';' THEN
      PERFORM espf.refuse_rule(rule_name, col, 'one expression only: '';'' is not allowed');
    ELSIF c = '$' THEN
      PERFORM espf.refuse_rule(rule_name, col, '''$'' (dollar quoting, parameters) is not allowed: use a string literal');
    ELSIF (c = '-' AND substr(expr, i + 1, 1) = '-') OR (c = '/' AND substr(expr, i + 1, 1) = '*') THEN
      PERFORM espf.refuse_rule(rule_name, col, 'comments are not allowed');
    ELSIF c = '(' THEN
      depth := depth + 1;
      res := res || c;
    ELSIF c = ')' THEN
      depth := depth - 1;
      IF depth < 0 THEN
        PERFORM espf.refuse_rule(rule_name, col, 'unbalanced parentheses');
      END IF;
      res := res || c;
    ELSE
      res := res || c;
    END IF;
    i := i + 1;
  END LOOP;
  IF depth <> 0 THEN
    PERFORM espf.refuse_rule(rule_name, col, 'unbalanced parentheses');
  END IF;
  RETURN res;
END
$$;

-- Whether the (blanked) expression mentions the row OLD or NEW (not a column of
-- that name after a dot).
CREATE OR REPLACE FUNCTION espf.rule_mentions(blanked text, row_name text) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
  SELECT blanked ~* ('(^|[^.A-Za-z0-9_])' || row_name || '($|[^A-Za-z0-9_$])')
$$;

-- The type of one expression of the rule, parsed (never run) against its table
-- with OLD and NEW as the rows the rule's operations have.
CREATE OR REPLACE FUNCTION espf.rule_expression_type(r espf.event_rules, col text, expr text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  has_new boolean := NOT ('DELETE' = ANY (r.operations));
  has_old boolean := NOT ('INSERT' = ANY (r.operations));
  from_list text;
  typ text;
BEGIN
  from_list := concat_ws(', ',
    CASE WHEN has_new THEN format('%s AS new', r.source) END,
    CASE WHEN has_old THEN format('%s AS old', r.source) END);
  IF from_list = '' THEN
    from_list := '(SELECT) AS espf_no_row';
  END IF;
  BEGIN
    EXECUTE format('CREATE TEMP VIEW espf_rule_expression AS SELECT (%s) AS x FROM %s', expr, from_list);
  EXCEPTION WHEN OTHERS THEN
    PERFORM espf.refuse_rule(r.name, col, SQLERRM, SQLSTATE);
  END;
  SELECT format_type(a.atttypid, a.atttypmod) INTO typ
    FROM pg_attribute a WHERE a.attrelid = 'pg_temp.espf_rule_expression'::regclass AND a.attname = 'x';
  DROP VIEW pg_temp.espf_rule_expression;
  RETURN typ;
END
$$;

-- Checks a rule against its table; returns how its variables are written:
-- 'jsonb' (one event per row) or 'jsonb[]' (one event per non-null element, in
-- order). Raises (naming the rule and the problem) when it does not compile.
CREATE OR REPLACE FUNCTION espf.check_rule(r espf.event_rules)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  op     text;
  col    text;
  kind   char;
  blank  text;
  expr   record;
  typ    text;
  vtype  text;
BEGIN
  IF r.name IS NULL OR btrim(r.name) = '' THEN
    PERFORM espf.refuse_rule(coalesce(r.name, ''), 'name', 'a rule needs a name');
  END IF;
  IF r.event_type IS NULL OR NOT EXISTS (SELECT 1 FROM espf.event_types t WHERE t.name = r.event_type) THEN
    PERFORM espf.refuse_rule(r.name, 'event_type',
      format('unknown event type %L (not a row of espf.event_types: insert the type first)', r.event_type), '23503');
  END IF;
  IF r.event_type ~ '[$\r\n]' THEN
    PERFORM espf.refuse_rule(r.name, 'event_type', 'a type name with ''$'' or a line break cannot be compiled into a trigger');
  END IF;
  SELECT c.relkind INTO kind FROM pg_class c WHERE c.oid = r.source;
  IF kind IS NULL THEN
    PERFORM espf.refuse_rule(r.name, 'source', format('table with oid %s does not exist', r.source::oid), '42P01');
  ELSIF kind NOT IN ('r', 'p') THEN
    PERFORM espf.refuse_rule(r.name, 'source', format('%s is not a table', r.source));
  END IF;
  IF r.operations IS NULL OR cardinality(r.operations) = 0 THEN
    PERFORM espf.refuse_rule(r.name, 'operations', 'empty: give a non-empty subset of {INSERT,UPDATE,DELETE}');
  END IF;
  FOREACH op IN ARRAY r.operations LOOP
    IF op IS NULL OR op NOT IN ('INSERT', 'UPDATE', 'DELETE') THEN
      PERFORM espf.refuse_rule(r.name, 'operations', format('unknown operation %L: use INSERT, UPDATE or DELETE', op));
    END IF;
  END LOOP;
  IF (SELECT count(DISTINCT o) FROM unnest(r.operations) o) <> cardinality(r.operations) THEN
    PERFORM espf.refuse_rule(r.name, 'operations', format('%s names an operation twice', r.operations));
  END IF;
  IF r.watch IS NOT NULL THEN
    IF NOT ('UPDATE' = ANY (r.operations)) THEN
      PERFORM espf.refuse_rule(r.name, 'watch', 'watch applies to UPDATE: set it null for a rule without UPDATE');
    END IF;
    IF cardinality(r.watch) = 0 THEN
      PERFORM espf.refuse_rule(r.name, 'watch', 'empty: list columns, or null for any column');
    END IF;
    FOREACH col IN ARRAY r.watch LOOP
      IF col IS NULL OR NOT EXISTS (SELECT 1 FROM pg_attribute a
                                     WHERE a.attrelid = r.source AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped) THEN
        PERFORM espf.refuse_rule(r.name, 'watch', format('column %L of %s does not exist', col, r.source), '42703');
      END IF;
    END LOOP;
  END IF;
  IF r.i_env IS NULL THEN
    PERFORM espf.refuse_rule(r.name, 'i_env', 'an expression is needed (e.g. NEW.i_env or 1)');
  END IF;
  FOR expr IN SELECT * FROM (VALUES (1, 'condition', r.condition), (2, 'variables', r.variables), (3, 'i_env', r.i_env)) v(k, col, text)
               WHERE v.text IS NOT NULL OR v.col = 'variables' ORDER BY k LOOP
    blank := espf.rule_expression_check(r.name, expr.col, expr.text);
    IF 'INSERT' = ANY (r.operations) AND espf.rule_mentions(blank, 'old') THEN
      PERFORM espf.refuse_rule(r.name, expr.col, 'OLD in a rule for INSERT: an inserted row has no OLD', '42P01');
    END IF;
    IF 'DELETE' = ANY (r.operations) AND espf.rule_mentions(blank, 'new') THEN
      PERFORM espf.refuse_rule(r.name, expr.col, 'NEW in a rule for DELETE: a deleted row has no NEW', '42P01');
    END IF;
    typ := espf.rule_expression_type(r, expr.col, expr.text);
    IF expr.col = 'condition' AND typ <> 'boolean' THEN
      PERFORM espf.refuse_rule(r.name, 'condition', format('must be boolean, is %s', typ), '42804');
    ELSIF expr.col = 'variables' THEN
      IF typ NOT IN ('jsonb', 'jsonb[]') THEN
        PERFORM espf.refuse_rule(r.name, 'variables', format('must be jsonb (or jsonb[] for several events), is %s', typ), '42804');
      END IF;
      vtype := typ;
    ELSIF expr.col = 'i_env' AND typ NOT IN ('integer', 'smallint', 'bigint') THEN
      PERFORM espf.refuse_rule(r.name, 'i_env', format('must be an integer, is %s', typ), '42804');
    END IF;
  END LOOP;
  RETURN vtype;
END
$$;

-- When variables is a single jsonb_build_object(…) call, its arguments (else null).
CREATE OR REPLACE FUNCTION espf.rule_build_object_args(expr text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  m     text[] := regexp_match(expr, '^\s*jsonb_build_object\s*\((.*)\)\s*$', 's');
  inside text;
  blank text;
  depth int := 0;
  c     text;
BEGIN
  IF m IS NULL THEN RETURN NULL; END IF;
  inside := m[1];
  IF btrim(inside) = '' THEN RETURN NULL; END IF;
  -- The last ')' must close the first '(': the inside text's parentheses never go below zero.
  blank := espf.rule_expression_check('', 'variables', inside);
  FOR k IN 1 .. length(blank) LOOP
    c := substr(blank, k, 1);
    IF c = '(' THEN depth := depth + 1; ELSIF c = ')' THEN depth := depth - 1; END IF;
    IF depth < 0 THEN RETURN NULL; END IF;
  END LOOP;
  RETURN inside;
EXCEPTION WHEN OTHERS THEN
  RETURN NULL;
END
$$;

-- The body of a rule's trigger function (between its dollar quotes).
CREATE OR REPLACE FUNCTION espf.rule_function_body(r espf.event_rules, vtype text DEFAULT 'jsonb')
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
  events text := format('%L', r.event_type);
  simple_env boolean := r.i_env ~* '^\s*((new|old)\.[a-z_][a-z0-9_]*|[0-9]+)\s*$';
  args   text := espf.rule_build_object_args(r.variables);
  env    text;
BEGIN
  env := CASE WHEN simple_env AND vtype = 'jsonb' THEN btrim(r.i_env) ELSE 'env' END;
  IF vtype = 'jsonb' THEN
    RETURN concat(
      E'DECLARE\n',
      CASE WHEN env = 'env' THEN format(E'  env int := (%s);\n', r.i_env) END,
      E'  ev bigint := nextval(''espf.events_i_event_seq'');\n',
      E'BEGIN\n',
      E'  INSERT INTO espf.events (i_event, event_type, variables)\n',
      format(E'  VALUES (ev, %s, ', events),
      CASE WHEN args IS NOT NULL
        THEN format(E'jsonb_build_object(\n    ''i_env'', %s, ''event_time'', espf.event_time(),\n    %s,\n    ''i_event'', ev));\n', env, btrim(args))
        ELSE format(E'jsonb_build_object(''i_env'', %s, ''event_time'', espf.event_time())\n    || (%s)\n    || jsonb_build_object(''i_event'', ev));\n', env, r.variables)
      END,
      E'  RETURN NULL;\nEND\n');
  END IF;
  RETURN concat(
    E'DECLARE\n',
    format(E'  env int := (%s);\n', r.i_env),
    E'  v jsonb;\n  ev bigint;\n',
    E'BEGIN\n',
    format(E'  FOREACH v IN ARRAY coalesce((%s), ''{}''::jsonb[]) LOOP\n', r.variables),
    E'    CONTINUE WHEN v IS NULL;\n',
    E'    ev := nextval(''espf.events_i_event_seq'');\n',
    E'    INSERT INTO espf.events (i_event, event_type, variables)\n',
    format(E'    VALUES (ev, %s, jsonb_build_object(''i_env'', env, ''event_time'', espf.event_time()) || v || jsonb_build_object(''i_event'', ev));\n', events),
    E'  END LOOP;\n',
    E'  RETURN NULL;\nEND\n');
END
$$;

-- The SQL a rule compiles to (its trigger function, then its trigger).
CREATE OR REPLACE FUNCTION espf.rule_sql(r espf.event_rules, vtype text DEFAULT 'jsonb')
RETURNS text LANGUAGE plpgsql STABLE AS $$
DECLARE
  fn     text := format('espf.%I', espf.rule_function_name(r.name));
  ops    text;
BEGIN
  SELECT string_agg(CASE WHEN o = 'UPDATE' AND r.watch IS NOT NULL
                         THEN 'UPDATE OF ' || (SELECT string_agg(format('%I', w), ', ') FROM unnest(r.watch) w)
                         ELSE o END, ' OR ' ORDER BY array_position(ARRAY['INSERT', 'UPDATE', 'DELETE'], o))
    INTO ops FROM unnest(r.operations) o;
  RETURN concat(
    -- (names on one line: a line break in a name must not end the comment)
    format(E'-- rule %s: %s on %s (generated from espf.event_rules: change the row, not this)\n',
           regexp_replace(r.name, '[\r\n]', ' ', 'g'), regexp_replace(r.event_type, '[\r\n]', ' ', 'g'), r.source),
    format(E'CREATE OR REPLACE FUNCTION %s() RETURNS trigger LANGUAGE plpgsql AS $espf_rule$\n', fn),
    espf.rule_function_body(r, vtype),
    E'$espf_rule$;\n',
    format(E'CREATE OR REPLACE TRIGGER %I\n  AFTER %s ON %s FOR EACH ROW\n', espf.rule_trigger_name(r.name), ops, r.source),
    CASE WHEN r.condition IS NOT NULL THEN format(E'  WHEN (%s)\n', r.condition) END,
    format(E'  EXECUTE FUNCTION %s(%L);\n', fn, r.event_type));
END
$$;

-- Drops a rule's trigger (when its table still exists) and function.
CREATE OR REPLACE FUNCTION espf.drop_rule_objects(rule_name text, source regclass)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = source AND t.tgname = espf.rule_trigger_name(rule_name)) THEN
    EXECUTE format('DROP TRIGGER %I ON %s', espf.rule_trigger_name(rule_name), source);
  END IF;
  EXECUTE format('DROP FUNCTION IF EXISTS espf.%I()', espf.rule_function_name(rule_name));
END
$$;

-- Checks a rule and, while its type is enabled, compiles it: (re)creates its
-- function and trigger. A rule of a disabled type has no trigger at all (it
-- costs billing writes nothing); enabling the type compiles it (espf.sync_capture).
CREATE OR REPLACE FUNCTION espf.compile_rule(r espf.event_rules)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  vtype text := espf.check_rule(r);
BEGIN
  IF NOT coalesce((SELECT t.enabled FROM espf.event_types t WHERE t.name = r.event_type), false) THEN
    PERFORM espf.drop_rule_objects(r.name, r.source);
    RETURN;
  END IF;
  BEGIN
    EXECUTE espf.rule_sql(r, vtype);
  EXCEPTION WHEN OTHERS THEN
    PERFORM espf.refuse_rule(r.name, CASE WHEN SQLERRM ~* 'WHEN' THEN 'condition' ELSE 'rule' END, SQLERRM, SQLSTATE);
  END;
END
$$;

-- Brings the function of every compiled rule up to what this release's
-- compiler writes (espf migrate, sql/990_sync_capture.sql): a function whose
-- body differs is replaced. CREATE OR REPLACE FUNCTION locks no table, so this
-- runs while billing writes; the triggers (and their WHEN clauses) are left as
-- they are. A rule that no longer compiles is left to espf rule check.
CREATE OR REPLACE FUNCTION espf.refresh_rule_functions() RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
  x     record;
  r     espf.event_rules;
  src   text;
  body  text;
  n     int := 0;
BEGIN
  FOR x IN SELECT e AS rule, f.prosrc AS src FROM espf.event_rules e
             JOIN pg_proc f ON f.proname = espf.rule_function_name(e.name) AND f.pronamespace = 'espf'::regnamespace
            WHERE EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = e.source AND g.tgname = espf.rule_trigger_name(e.name))
            ORDER BY e.name LOOP
    r := x.rule;
    src := x.src;
    -- Up to date as either kind of rule: nothing to check (check_rule parses
    -- every expression, which takes a while for every rule on every migrate).
    CONTINUE WHEN src IN (E'\n' || espf.rule_function_body(r, 'jsonb'), E'\n' || espf.rule_function_body(r, 'jsonb[]'));
    BEGIN
      body := E'\n' || espf.rule_function_body(r, espf.check_rule(r));  -- as rule_sql writes it
    EXCEPTION WHEN OTHERS THEN
      CONTINUE;
    END;
    IF body IS DISTINCT FROM src THEN
      EXECUTE format(E'CREATE OR REPLACE FUNCTION espf.%I() RETURNS trigger LANGUAGE plpgsql AS $espf_rule$%s$espf_rule$',
                     espf.rule_function_name(r.name), body);
      n := n + 1;
    END IF;
  END LOOP;
  RETURN n;
END
$$;
REVOKE EXECUTE ON FUNCTION espf.refresh_rule_functions() FROM PUBLIC;

-- The trigger on espf.event_rules. It runs with its owner's (the espf owner's)
-- rights: creating a trigger needs rights on the source table that writers of
-- rules (espf_admin) do not otherwise have.
CREATE OR REPLACE FUNCTION espf.event_rules_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    IF TG_OP = 'DELETE' OR OLD.name IS DISTINCT FROM NEW.name OR OLD.source IS DISTINCT FROM NEW.source THEN
      PERFORM espf.drop_rule_objects(OLD.name, OLD.source);
    END IF;
  END IF;
  IF TG_OP = 'DELETE' THEN
    RETURN OLD;
  END IF;
  PERFORM espf.compile_rule(NEW);
  RETURN NEW;
END
$$;
REVOKE EXECUTE ON FUNCTION espf.event_rules_changed() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION espf.compile_rule(espf.event_rules) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION espf.drop_rule_objects(text, regclass) FROM PUBLIC;

-- BEFORE: the refusals come before the foreign key's (they name the rule).
CREATE OR REPLACE TRIGGER compile_rule BEFORE INSERT OR UPDATE OR DELETE ON espf.event_rules
  FOR EACH ROW EXECUTE FUNCTION espf.event_rules_changed();

-- ── reading rules back ─────────────────────────────────────────────────────
-- Whether a built-in rule differs from the definition espf migrate installed.
CREATE OR REPLACE VIEW espf.event_rule_status AS
SELECT r.name, r.event_type, r.source, r.operations, r.watch, r.condition, r.variables, r.i_env, r.builtin,
       coalesce(t.enabled, false) AS enabled,
       r.builtin AND b.name IS NOT NULL
         AND (r.event_type, r.source, r.operations, r.watch, r.condition, r.variables, r.i_env)
             IS DISTINCT FROM (b.event_type, to_regclass(b.source), b.operations, b.watch, b.condition, b.variables, b.i_env) AS changed,
       espf.rule_trigger_name(r.name) AS trigger_name,
       g.tgenabled IS NOT NULL AS compiled,
       coalesce(g.tgenabled <> 'D', false) AS active
  FROM espf.event_rules r
  LEFT JOIN espf.event_types t ON t.name = r.event_type
  LEFT JOIN espf.builtin_event_rules b ON b.name = r.name
  LEFT JOIN pg_trigger g ON g.tgrelid = r.source AND g.tgname = espf.rule_trigger_name(r.name);

-- Checks every rule again without changing anything; one row per rule that no
-- longer compiles (e.g. a column it uses was dropped), or whose type is enabled
-- but whose trigger is missing; then the dispatcher rules' rows.
CREATE OR REPLACE FUNCTION espf.check_rules()
RETURNS TABLE (name text, problem text, code text) LANGUAGE plpgsql AS $$
DECLARE
  r espf.event_rules;
BEGIN
  FOR r IN SELECT * FROM espf.event_rules ORDER BY 1 LOOP
    BEGIN
      PERFORM espf.check_rule(r);
      IF (SELECT t.enabled FROM espf.event_types t WHERE t.name = r.event_type)
         AND NOT EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = r.source AND g.tgname = espf.rule_trigger_name(r.name)) THEN
        PERFORM espf.refuse_rule(r.name, 'rule', format('its trigger %s on %s is missing (rewrite the row to compile it again)',
                                                       espf.rule_trigger_name(r.name), r.source), '55000');
      END IF;
    EXCEPTION WHEN OTHERS THEN
      name := r.name; problem := SQLERRM; code := SQLSTATE;
      RETURN NEXT;
    END;
  END LOOP;
  -- The dispatcher rules (sql/200_dispatchers.sql).
  RETURN QUERY SELECT d.name, d.problem, d.code FROM espf.check_dispatcher_rules() d;
END
$$;
