-- Request steps (migrations/0015_request_steps.sql, docs/handlers.md "Request
-- steps"): the database checks the structure of every row of espf.http_steps;
-- the expressions themselves are compiled by espf (`espf handler check`, and
-- `espf run` when it reads the configuration). Every refusal is one line that
-- names the handler, the event type and the step, with SQLSTATE 23514.

CREATE OR REPLACE FUNCTION espf.max_steps() RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT 20 $$;
CREATE OR REPLACE FUNCTION espf.max_step_expression() RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT 16384 $$; -- characters

CREATE OR REPLACE FUNCTION espf.check_http_step() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  what text := format('handler %s, type %s, step %s', NEW.handler, NEW.event_type, coalesce(NEW.step::text, 'null'));
  k text;
  v jsonb;
  n int;
  urls int;
  problem text;
BEGIN
  IF NEW.event_type IS NULL OR (NEW.event_type <> '*' AND NOT EXISTS (SELECT 1 FROM espf.event_types t WHERE t.name = NEW.event_type)) THEN
    PERFORM espf.refuse('espf.http_steps.event_type', format('%s: %s is not an espf event type (a row of espf.event_types) nor ''*''', what, espf.quote_short(NEW.event_type)));
  END IF;
  IF NEW.step IS NULL OR NEW.step < 1 OR NEW.step > espf.max_steps() THEN
    PERFORM espf.refuse('espf.http_steps.step', format('%s: the step number must be 1 … %s', what, espf.max_steps()));
  END IF;
  SELECT count(*) INTO n FROM espf.http_steps s
   WHERE s.handler = NEW.handler AND s.event_type = NEW.event_type AND s.step <> NEW.step
     AND (TG_OP = 'INSERT' OR (s.handler, s.event_type, s.step) <> (OLD.handler, OLD.event_type, OLD.step));
  IF n >= espf.max_steps() THEN
    PERFORM espf.refuse('espf.http_steps.step', format('%s: at most %s steps per handler and type', what, espf.max_steps()));
  END IF;
  IF NEW.name IS NOT NULL THEN
    IF NEW.name !~ '^[A-Za-z_][A-Za-z0-9_]{0,62}$' THEN
      PERFORM espf.refuse('espf.http_steps.name', format('%s: name %s must be letters, digits and "_", not starting with a digit, at most 63', what, espf.quote_short(NEW.name)));
    END IF;
    IF EXISTS (SELECT 1 FROM espf.http_steps s WHERE s.handler = NEW.handler AND s.event_type = NEW.event_type
                  AND s.name = NEW.name AND s.step <> NEW.step) THEN
      PERFORM espf.refuse('espf.http_steps.name', format('%s: another step of this handler and type is named %s', what, NEW.name));
    END IF;
  END IF;
  IF NEW.method IS NULL OR NEW.method NOT IN ('GET', 'POST', 'PUT', 'PATCH', 'DELETE') THEN
    PERFORM espf.refuse('espf.http_steps.method', format('%s: method %s is not one of GET, POST, PUT, PATCH, DELETE', what, espf.quote_short(NEW.method)));
  END IF;
  IF NEW.body IS NOT NULL AND NEW.method IN ('GET', 'DELETE') THEN
    PERFORM espf.refuse('espf.http_steps.body', format('%s: a %s request has no body (body must be null)', what, NEW.method));
  END IF;
  IF NEW.path IS NULL OR length(NEW.path) > 2048 OR (NEW.path <> '' AND NEW.path !~ '^[/?]')
     OR NEW.path ~ '[\x01-\x1f\x7f]' OR NEW.path ~ '(^|/)\.\.?(/|$|\?)' OR NEW.path ~ '^//' THEN
    PERFORM espf.refuse('espf.http_steps.path', format('%s: path %s must be empty or start with "/" or "?", at most 2048 characters, without control characters, "//" at the start or "." / ".." segments', what, espf.quote_short(NEW.path)));
  END IF;
  IF NEW.content_type IS NULL OR NEW.content_type NOT IN ('application/json', 'application/x-www-form-urlencoded') THEN
    PERFORM espf.refuse('espf.http_steps.content_type', format('%s: content type %s is not application/json or application/x-www-form-urlencoded', what, espf.quote_short(NEW.content_type)));
  END IF;
  IF NEW.headers IS NULL OR jsonb_typeof(NEW.headers) <> 'object' THEN
    PERFORM espf.refuse('espf.http_steps.headers', format('%s: headers must be a JSON object {"Header-Name": "<expression>"}', what));
  END IF;
  IF (SELECT count(*) FROM jsonb_object_keys(NEW.headers)) > 32 THEN
    PERFORM espf.refuse('espf.http_steps.headers', format('%s: at most 32 headers', what));
  END IF;
  FOR k, v IN SELECT j.key, j.value FROM jsonb_each(NEW.headers) j ORDER BY j.key LOOP
    IF k !~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]{1,128}$' THEN
      PERFORM espf.refuse('espf.http_steps.headers', format('%s: %s is not a header name (letters, digits and !#$%%&''*+.^_`|~-)', what, espf.quote_short(k)));
    END IF;
    IF lower(k) IN ('host', 'content-length', 'transfer-encoding', 'connection', 'date', 'content-type') THEN
      PERFORM espf.refuse('espf.http_steps.headers', format('%s: header %s is set by espf (content_type for Content-Type)', what, k));
    END IF;
    IF jsonb_typeof(v) <> 'string' OR length(v #>> '{}') > espf.max_step_expression() OR btrim(v #>> '{}') = '' THEN
      PERFORM espf.refuse('espf.http_steps.headers', format('%s: header %s must be a non-empty expression (a JSON string) of at most %s characters', what, k, espf.max_step_expression()));
    END IF;
    -- A value written env:NAME is a secret, not an expression.
    problem := coalesce(espf.env_ref_problem(v #>> '{}'), espf.env_prefix_problem(v #>> '{}'));
    IF problem IS NOT NULL THEN
      PERFORM espf.refuse('espf.http_steps.headers', format('%s: header %s: %s', what, k, problem));
    END IF;
  END LOOP;
  IF length(NEW.body) > espf.max_step_expression() OR length(NEW.success_when) > espf.max_step_expression()
     OR length(NEW.refuse_when) > espf.max_step_expression() OR length(NEW.exists_when) > espf.max_step_expression() THEN
    PERFORM espf.refuse('espf.http_steps.body', format('%s: an expression (body, success_when, refuse_when, exists_when) is longer than %s characters', what, espf.max_step_expression()));
  END IF;
  IF btrim(NEW.body) = '' OR btrim(NEW.success_when) = '' OR btrim(NEW.refuse_when) = '' OR btrim(NEW.exists_when) = '' THEN
    PERFORM espf.refuse('espf.http_steps.body', format('%s: an expression (body, success_when, refuse_when, exists_when) is empty: use null', what));
  END IF;
  -- Steps go to one base URL (docs/handlers.md, "Request steps").
  SELECT cardinality(h.url) INTO urls FROM espf.http_handlers h WHERE h.handler = NEW.handler;
  IF urls > 1 THEN
    PERFORM espf.refuse('espf.http_steps.handler', format('%s: handler %s has %s URLs; a handler with steps has one URL (its base URL)', what, NEW.handler, urls));
  END IF;
  NEW.updated_at := now();
  RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER check_http_step BEFORE INSERT OR UPDATE ON espf.http_steps
  FOR EACH ROW EXECUTE FUNCTION espf.check_http_step();

-- The other side of the one-URL rule: a second URL on a handler that has steps.
CREATE OR REPLACE FUNCTION espf.check_http_handler_steps() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF cardinality(NEW.url) > 1 AND EXISTS (SELECT 1 FROM espf.http_steps s WHERE s.handler = NEW.handler) THEN
    PERFORM espf.refuse('espf.http_handlers.url', format('handler %s has request steps (espf.http_steps): it has one URL, its base URL, not %s', NEW.handler, cardinality(NEW.url)));
  END IF;
  RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER check_http_handler_steps BEFORE UPDATE OF url ON espf.http_handlers
  FOR EACH ROW EXECUTE FUNCTION espf.check_http_handler_steps();

-- The steps of the http handlers of an instance, in order (espf run, `espf handler check`).
CREATE OR REPLACE FUNCTION espf.steps_of(handler_names text[])
RETURNS TABLE (handler text, event_type text, step int, name text, method text, path text, headers jsonb,
               body text, content_type text, success_when text, refuse_when text, exists_when text)
LANGUAGE sql STABLE AS $$
  SELECT s.handler, s.event_type, s.step, s.name, s.method, s.path, s.headers, s.body, s.content_type,
         s.success_when, s.refuse_when, s.exists_when
    FROM espf.http_steps s
   WHERE s.handler = ANY (handler_names)
   ORDER BY s.handler, s.event_type, s.step
$$;
