-- Configuration rows are checked by the database itself, whoever writes them
-- (the espf CLI or a DBA in psql). Every refusal names the column and the rule,
-- with SQLSTATE 23514 (check_violation) or 23503 (foreign_key_violation).

CREATE OR REPLACE FUNCTION espf.refuse(col text, rule text, code text DEFAULT '23514')
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '%: %', col, rule USING ERRCODE = code, COLUMN = split_part(col, '.', 3),
    SCHEMA = 'espf', TABLE = split_part(col, '.', 2);
END
$$;

-- espf.handlers
CREATE OR REPLACE FUNCTION espf.check_handler() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  urls text[];
BEGIN
  IF NEW.name IS NULL OR NEW.name !~ '^[A-Za-z][A-Za-z0-9_.-]{0,62}$' THEN
    PERFORM espf.refuse('espf.handlers.name', format('%L is not a valid handler name (a letter, then letters, digits, "_", "." or "-", at most 63)', NEW.name));
  END IF;
  IF NEW.kind IS NULL OR NEW.kind NOT IN ('http', 'dispatcher') THEN
    PERFORM espf.refuse('espf.handlers.kind', format('%L is not a handler kind (http or dispatcher)', NEW.kind));
  END IF;
  IF NEW.instance IS NULL OR NEW.instance !~ '^[a-z0-9_]{1,50}$' THEN
    PERFORM espf.refuse('espf.handlers.instance', format('%L is not a valid instance name (lower-case letters, digits and "_", at most 50: the slot is espf_<instance>)', NEW.instance));
  END IF;
  IF TG_OP = 'UPDATE' AND NEW.kind <> OLD.kind THEN
    PERFORM espf.refuse('espf.handlers.kind', 'the kind of a handler cannot change; create another handler');
  END IF;
  IF NEW.enabled AND NEW.kind = 'http' THEN
    SELECT h.url INTO urls FROM espf.http_handlers h WHERE h.handler = NEW.name;
    IF coalesce(cardinality(urls), 0) = 0 THEN
      PERFORM espf.refuse('espf.handlers.enabled', format('http handler %s cannot be enabled while espf.http_handlers.url is empty: set its URL first', NEW.name));
    END IF;
  END IF;
  RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER check_handler BEFORE INSERT OR UPDATE ON espf.handlers
  FOR EACH ROW EXECUTE FUNCTION espf.check_handler();

-- espf.subscriptions
CREATE OR REPLACE FUNCTION espf.check_subscription() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  h espf.handlers;
  consumes text;
BEGIN
  SELECT * INTO h FROM espf.handlers WHERE name = NEW.handler;
  IF NOT FOUND THEN
    PERFORM espf.refuse('espf.subscriptions.handler', format('unknown handler %L (not a row of espf.handlers)', NEW.handler), '23503');
  END IF;
  IF NOT EXISTS (SELECT 1 FROM espf.event_types WHERE name = NEW.event_type) THEN
    PERFORM espf.refuse('espf.subscriptions.event_type', format('unknown event type %L (not a row of espf.event_types)', NEW.event_type), '23503');
  END IF;
  IF h.kind = 'dispatcher' AND NOT EXISTS (
       SELECT 1 FROM espf.dispatcher_rules r WHERE r.handler = NEW.handler AND r.event_type = NEW.event_type) THEN
    SELECT string_agg(r.event_type, ', ' ORDER BY r.event_type) INTO consumes
      FROM espf.dispatcher_rules r WHERE r.handler = NEW.handler;
    PERFORM espf.refuse('espf.subscriptions.event_type',
      format('dispatcher %s cannot consume %L; it consumes only: %s', NEW.handler, NEW.event_type, coalesce(consumes, 'nothing')));
  END IF;
  RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER check_subscription BEFORE INSERT OR UPDATE ON espf.subscriptions
  FOR EACH ROW EXECUTE FUNCTION espf.check_subscription();

-- espf.http_handlers
CREATE OR REPLACE FUNCTION espf.check_http_handler() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  u text;
  k text;
  v jsonb;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM espf.handlers WHERE name = NEW.handler AND kind = 'http') THEN
    PERFORM espf.refuse('espf.http_handlers.handler', format('%L is not an http handler of espf.handlers (insert it there with kind = ''http'' first)', NEW.handler), '23503');
  END IF;
  IF NEW.url IS NULL THEN
    PERFORM espf.refuse('espf.http_handlers.url', 'must be a list of http(s) URLs, not null (use ''{}'' for none)');
  END IF;
  FOREACH u IN ARRAY NEW.url LOOP
    IF u IS NULL OR u !~* '^https?://[^/\s?#]+(/\S*)?$' THEN
      PERFORM espf.refuse('espf.http_handlers.url', format('%L is not an http(s) URL (http://host[:port][/path])', u));
    END IF;
  END LOOP;
  IF cardinality(NEW.url) = 0 AND EXISTS (SELECT 1 FROM espf.handlers WHERE name = NEW.handler AND enabled) THEN
    PERFORM espf.refuse('espf.http_handlers.url', format('cannot be empty while handler %s is enabled; disable it first', NEW.handler));
  END IF;
  IF NEW.auth_header IS NULL OR NEW.auth_header !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]+$' THEN
    PERFORM espf.refuse('espf.http_handlers.auth_header', format('%L is not a valid HTTP header name', NEW.auth_header));
  END IF;
  IF NEW.auth_method IS NULL OR NEW.auth_method NOT IN ('None', 'Basic', 'Custom', 'Signature') THEN
    PERFORM espf.refuse('espf.http_handlers.auth_method', format('%L is not an auth method (None, Basic, Custom or Signature)', NEW.auth_method));
  END IF;
  IF NEW.auth_method = 'Basic' AND (coalesce(NEW.basic_auth_user, '') = '' OR coalesce(NEW.basic_auth_key, '') = '') THEN
    PERFORM espf.refuse('espf.http_handlers.basic_auth_user', 'Basic auth needs both basic_auth_user and basic_auth_key');
  END IF;
  IF NEW.auth_method = 'Basic' AND position(':' IN NEW.basic_auth_user) > 0 THEN
    PERFORM espf.refuse('espf.http_handlers.basic_auth_user', 'a Basic auth user cannot contain ":"');
  END IF;
  IF NEW.auth_method = 'Custom' AND (coalesce(NEW.custom_auth_type, '') = '' OR coalesce(NEW.custom_auth_credentials, '') = '') THEN
    PERFORM espf.refuse('espf.http_handlers.custom_auth_type', 'Custom auth needs both custom_auth_type and custom_auth_credentials');
  END IF;
  IF NEW.auth_method = 'Signature' AND (coalesce(NEW.signature_auth_key_id, '') = '' OR coalesce(NEW.signature_auth_key, '') = '') THEN
    PERFORM espf.refuse('espf.http_handlers.signature_auth_key_id', 'Signature auth needs both signature_auth_key_id and signature_auth_key');
  END IF;
  IF NEW.max_wait_time IS NULL OR NEW.max_wait_time <= 0 THEN
    PERFORM espf.refuse('espf.http_handlers.max_wait_time', format('must be > 0 seconds, not %s', coalesce(NEW.max_wait_time::text, 'null')));
  END IF;
  IF NEW.request_timeout IS NULL OR NEW.request_timeout <= 0 THEN
    PERFORM espf.refuse('espf.http_handlers.request_timeout', format('must be > 0 seconds, not %s', coalesce(NEW.request_timeout::text, 'null')));
  END IF;
  IF NEW.token_rate IS NULL OR NEW.token_rate <= 0 THEN
    PERFORM espf.refuse('espf.http_handlers.token_rate', format('must be > 0 requests per second, not %s', coalesce(NEW.token_rate::text, 'null')));
  END IF;
  IF NEW.token_burstiness IS NULL OR NEW.token_burstiness < 1 THEN
    PERFORM espf.refuse('espf.http_handlers.token_burstiness', format('must be >= 1 request, not %s', coalesce(NEW.token_burstiness::text, 'null')));
  END IF;
  IF NEW.max_attempts IS NULL OR NEW.max_attempts < 1 THEN
    PERFORM espf.refuse('espf.http_handlers.max_attempts', format('must be >= 1, not %s', coalesce(NEW.max_attempts::text, 'null')));
  END IF;
  IF NEW.retry_delay IS NULL OR NEW.retry_delay <= 0 THEN
    PERFORM espf.refuse('espf.http_handlers.retry_delay', format('must be > 0 seconds, not %s', coalesce(NEW.retry_delay::text, 'null')));
  END IF;
  IF NEW.retry_max_delay IS NULL OR NEW.retry_max_delay < NEW.retry_delay THEN
    PERFORM espf.refuse('espf.http_handlers.retry_max_delay', format('must be >= retry_delay (%s), not %s', NEW.retry_delay, coalesce(NEW.retry_max_delay::text, 'null')));
  END IF;
  -- The names the receiver knows types by: {"<espf type>": "<its name>", …}.
  IF NEW.event_names IS NULL OR jsonb_typeof(NEW.event_names) <> 'object' THEN
    PERFORM espf.refuse('espf.http_handlers.event_names', format('must be a JSON object {"<espf event type>": "<the receiver''s name>"}, not %s', coalesce(NEW.event_names::text, 'null')));
  END IF;
  FOR k, v IN SELECT j.key, j.value FROM jsonb_each(NEW.event_names) j ORDER BY j.key LOOP
    IF NOT EXISTS (SELECT 1 FROM espf.event_types t WHERE t.name = k) THEN
      PERFORM espf.refuse('espf.http_handlers.event_names', format('key %L is not an espf event type (not a row of espf.event_types)', k));
    END IF;
    IF jsonb_typeof(v) <> 'string' OR btrim(v #>> '{}') = '' THEN
      PERFORM espf.refuse('espf.http_handlers.event_names', format('key %L maps to %s: the receiver''s name must be a non-empty string', k, CASE WHEN jsonb_typeof(v) = 'string' THEN 'an empty name' ELSE v::text END));
    END IF;
  END LOOP;
  RETURN NEW;
END
$$;
CREATE OR REPLACE TRIGGER check_http_handler BEFORE INSERT OR UPDATE ON espf.http_handlers
  FOR EACH ROW EXECUTE FUNCTION espf.check_http_handler();

-- Deleting the http_handlers row (and so the url list) of an enabled http handler
-- would leave it enabled without URLs. Deleting the handler itself is fine: its
-- row here goes with it (ON DELETE CASCADE), after the handler row is gone.
CREATE OR REPLACE FUNCTION espf.check_http_handler_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM espf.handlers WHERE name = OLD.handler AND enabled) THEN
    PERFORM espf.refuse('espf.http_handlers.url', format('cannot be deleted while handler %s is enabled; disable it first', OLD.handler));
  END IF;
  RETURN OLD;
END
$$;
CREATE OR REPLACE TRIGGER check_http_handler_delete BEFORE DELETE ON espf.http_handlers
  FOR EACH ROW EXECUTE FUNCTION espf.check_http_handler_delete();
