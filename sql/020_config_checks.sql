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


-- The upper limits below keep every delay within what the sender's timers hold
-- (docs/security.md lists every rule). numeric columns accept 'NaN' and
-- 'Infinity', and NaN sorts above every number: every numeric check has an
-- upper bound, which refuses both.
CREATE OR REPLACE FUNCTION espf.max_retry_delay() RETURNS numeric LANGUAGE sql IMMUTABLE AS $$ SELECT 604800::numeric $$;  -- 7 days, in seconds
CREATE OR REPLACE FUNCTION espf.max_timeout() RETURNS int LANGUAGE sql IMMUTABLE AS $$ SELECT 86400 $$;                    -- 1 day, in seconds
CREATE OR REPLACE FUNCTION espf.max_token_rate() RETURNS numeric LANGUAGE sql IMMUTABLE AS $$ SELECT 1000000::numeric $$;  -- requests per second

-- A value quoted in a message: at most 80 characters of it.
CREATE OR REPLACE FUNCTION espf.quote_short(v text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN v IS NULL THEN 'null'
              WHEN length(v) > 80 THEN format('%L… (%s characters)', left(v, 77), length(v))
              ELSE format('%L', v) END
$$;

-- Secrets may be written env:NAME (read from the environment of espf run).
-- NULL when `v` is not of that form or names a variable well; else why not.
CREATE OR REPLACE FUNCTION espf.env_ref_problem(v text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN v IS NULL OR v NOT LIKE 'env:%' THEN NULL
              WHEN substr(v, 5) ~ '^[A-Za-z_][A-Za-z0-9_]{0,127}$' THEN NULL
              ELSE format('%s is not a valid env:NAME (NAME: letters, digits and "_", not starting with a digit, at most 128)', espf.quote_short(v)) END
$$;

-- auth_method StandardWebhooks signs with a secret written as the Standard Webhooks
-- specification writes it: whsec_ and the standard base64 (padded) of 24 to 64
-- random bytes (src/delivery/standard-webhooks.ts reads it; docs/handlers.md).
-- NULL when `v` is such a secret or an env:NAME (its value is checked by espf run);
-- else why not, without quoting the value (it is a secret).
CREATE OR REPLACE FUNCTION espf.webhook_secret_problem(v text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN coalesce(v, '') = '' THEN 'StandardWebhooks auth needs signature_auth_key: a whsec_… secret or env:NAME'
              WHEN v LIKE 'env:%' THEN NULL
              WHEN v !~ '^whsec_([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$'
                OR length(decode(substr(v, 7), 'base64')) NOT BETWEEN 24 AND 64
                THEN 'is not a Standard Webhooks secret: it must be whsec_ followed by the base64 of 24 to 64 random bytes (the value is not shown)'
         END
$$;

-- Four decimal numbers 0-255 without leading zeros (what every URL parser reads the same way).
CREATE OR REPLACE FUNCTION espf.is_ipv4(s text) RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
  SELECT s ~ '^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$'
$$;

-- An IPv6 address as written between [ and ] in a URL (no zone id).
CREATE OR REPLACE FUNCTION espf.is_ipv6(s text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  parts text[];
  halves text[];
  n int := 0;
  i int;
  compressed boolean;
BEGIN
  IF s IS NULL OR s !~ '^[0-9A-Fa-f:.]+$' OR s ~ ':::' THEN RETURN false; END IF;
  compressed := position('::' IN s) > 0;
  IF compressed THEN
    IF position('::' IN substr(s, position('::' IN s) + 2)) > 0 THEN RETURN false; END IF;
    halves := ARRAY[split_part(s, '::', 1), substr(s, position('::' IN s) + 2)];
  ELSE
    halves := ARRAY[s];
  END IF;
  FOR h IN 1 .. cardinality(halves) LOOP
    CONTINUE WHEN halves[h] = '';
    parts := string_to_array(halves[h], ':');
    FOR i IN 1 .. cardinality(parts) LOOP
      IF h = cardinality(halves) AND i = cardinality(parts) AND position('.' IN parts[i]) > 0 THEN
        IF NOT espf.is_ipv4(parts[i]) THEN RETURN false; END IF;
        n := n + 2;
      ELSIF parts[i] ~ '^[0-9A-Fa-f]{1,4}$' THEN
        n := n + 1;
      ELSE
        RETURN false;
      END IF;
    END LOOP;
  END LOOP;
  RETURN CASE WHEN compressed THEN n <= 7 ELSE n = 8 END;
END
$$;

-- Why `u` is not a URL the sender can POST to, or NULL when it is. A strict
-- subset of what the WHATWG URL parser of Node accepts (test/input-holes.test.ts
-- runs one list of URLs through both): http or https, //, an optional user[:password]@,
-- a host (an ASCII name of letters, digits, "-", "_" and dots; four numbers 0-255;
-- or [IPv6]), an optional port 1-65535, then nothing or a path starting with "/",
-- without spaces, control characters or backslashes.
CREATE OR REPLACE FUNCTION espf.http_url_problem(u text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  m text[];
  hostport text;
  host text;
  port text;
  last_label text;
BEGIN
  IF u IS NULL THEN RETURN 'null is not a URL'; END IF;
  IF length(u) > 2048 THEN RETURN 'longer than 2048 characters'; END IF;
  IF u ~ '[[:space:]\x01-\x1f\x7f-\x9f\\]' THEN RETURN 'contains a space, a control character or a backslash'; END IF;
  m := regexp_match(u, '^https?://([^/?#]*)(.*)$', 'i');
  IF m IS NULL THEN RETURN 'must start with http:// or https://'; END IF;
  IF m[2] <> '' AND left(m[2], 1) <> '/' THEN RETURN 'the path must start with "/"'; END IF;
  hostport := regexp_replace(m[1], '^.*@', '');   -- the last "@" ends user:password, as in the WHATWG parser
  IF left(hostport, 1) = '[' THEN
    m := regexp_match(hostport, '^\[([^]]*)\](:(.*))?$');
    IF m IS NULL OR NOT espf.is_ipv6(m[1]) THEN RETURN 'the host is not an IPv6 address in [ ]'; END IF;
    port := m[3];
  ELSE
    m := regexp_match(hostport, '^([^:]*)(:(.*))?$');
    host := m[1];
    port := m[3];
    IF host = '' THEN RETURN 'there is no host'; END IF;
    IF host !~ '^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?$' THEN
      RETURN 'the host must be a name of ASCII letters, digits, "-", "_" and dots, an IPv4 address or [IPv6]';
    END IF;
    IF host ~* '(^|\.)xn--' THEN
      RETURN 'internationalised host names (xn--…) are not accepted: use an ASCII name or an IP address';
    END IF;
    last_label := (regexp_match(host, '([^.]*)\.?$'))[1];
    IF last_label ~* '^([0-9]+|0x[0-9a-f]*)$' AND NOT espf.is_ipv4(host) THEN
      RETURN 'a host ending in a number must be an IPv4 address (four numbers 0-255, no leading zeros)';
    END IF;
  END IF;
  IF port IS NOT NULL AND (port !~ '^[0-9]{1,5}$' OR port::int NOT BETWEEN 1 AND 65535) THEN
    RETURN 'the port must be a number from 1 to 65535';
  END IF;
  RETURN NULL;
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

-- espf.http_handlers: the rules of one handler's settings, for its row and for
-- each environment's settings merged with it (sql/026_http_handler_envs.sql).
CREATE OR REPLACE FUNCTION espf.check_http_settings(r espf.http_handlers) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  u text;
  k text;
  v jsonb;
  problem text;
  col text;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM espf.handlers WHERE name = r.handler AND kind = 'http') THEN
    PERFORM espf.refuse('espf.http_handlers.handler', format('%L is not an http handler of espf.handlers (insert it there with kind = ''http'' first)', r.handler), '23503');
  END IF;
  IF r.url IS NULL THEN
    PERFORM espf.refuse('espf.http_handlers.url', 'must be a list of http(s) URLs, not null (use ''{}'' for none)');
  END IF;
  IF array_ndims(r.url) > 1 THEN
    PERFORM espf.refuse('espf.http_handlers.url', format('must be a one-dimensional list of URLs (''{http://a/x,http://b/y}''), not %s-dimensional', array_ndims(r.url)));
  END IF;
  FOREACH u IN ARRAY r.url LOOP
    problem := espf.http_url_problem(u);
    IF problem IS NOT NULL THEN
      PERFORM espf.refuse('espf.http_handlers.url', format('%s is not an http(s) URL (http://host[:port][/path]): %s', espf.quote_short(u), problem));
    END IF;
  END LOOP;
  IF cardinality(r.url) = 0 AND EXISTS (SELECT 1 FROM espf.handlers WHERE name = r.handler AND enabled) THEN
    PERFORM espf.refuse('espf.http_handlers.url', format('cannot be empty while handler %s is enabled; disable it first', r.handler));
  END IF;
  IF r.auth_header IS NULL OR r.auth_header !~ '^[!#$%&''*+.^_`|~0-9A-Za-z-]{1,100}$' THEN
    PERFORM espf.refuse('espf.http_handlers.auth_header', format('%s is not a valid HTTP header name', espf.quote_short(r.auth_header)));
  END IF;
  -- Headers the sender sets itself, or that change how the request is framed or routed.
  IF lower(r.auth_header) IN ('host', 'content-length', 'content-type', 'content-encoding', 'transfer-encoding', 'te', 'trailer',
                                'connection', 'keep-alive', 'upgrade', 'expect', 'date', 'proxy-connection') THEN
    PERFORM espf.refuse('espf.http_handlers.auth_header', format('%L cannot carry the credentials: the sender sets it or it frames the request (use Authorization or a header of your own)', r.auth_header));
  END IF;
  IF r.auth_method IS NULL OR r.auth_method NOT IN ('None', 'Basic', 'Custom', 'Signature', 'StandardWebhooks') THEN
    PERFORM espf.refuse('espf.http_handlers.auth_method', format('%L is not an auth method (None, Basic, Custom, Signature or StandardWebhooks)', r.auth_method));
  END IF;
  FOREACH col IN ARRAY ARRAY['basic_auth_user', 'basic_auth_key', 'custom_auth_type', 'custom_auth_credentials', 'signature_auth_key_id', 'signature_auth_key'] LOOP
    problem := espf.env_ref_problem(to_jsonb(r) ->> col);
    IF problem IS NOT NULL THEN
      PERFORM espf.refuse('espf.http_handlers.' || col, problem);
    END IF;
  END LOOP;
  IF r.auth_method = 'Basic' AND (coalesce(r.basic_auth_user, '') = '' OR coalesce(r.basic_auth_key, '') = '') THEN
    PERFORM espf.refuse('espf.http_handlers.basic_auth_user', 'Basic auth needs both basic_auth_user and basic_auth_key');
  END IF;
  IF r.auth_method = 'Basic' AND position(':' IN r.basic_auth_user) > 0 THEN
    PERFORM espf.refuse('espf.http_handlers.basic_auth_user', 'a Basic auth user cannot contain ":"');
  END IF;
  IF r.auth_method = 'Custom' AND (coalesce(r.custom_auth_type, '') = '' OR coalesce(r.custom_auth_credentials, '') = '') THEN
    PERFORM espf.refuse('espf.http_handlers.custom_auth_type', 'Custom auth needs both custom_auth_type and custom_auth_credentials');
  END IF;
  IF r.auth_method = 'Signature' AND (coalesce(r.signature_auth_key_id, '') = '' OR coalesce(r.signature_auth_key, '') = '') THEN
    PERFORM espf.refuse('espf.http_handlers.signature_auth_key_id', 'Signature auth needs both signature_auth_key_id and signature_auth_key');
  END IF;
  IF r.auth_method = 'StandardWebhooks' THEN
    problem := espf.webhook_secret_problem(r.signature_auth_key);
    IF problem IS NOT NULL THEN
      PERFORM espf.refuse('espf.http_handlers.signature_auth_key', problem);
    END IF;
  END IF;
  IF r.max_wait_time IS NULL OR NOT r.max_wait_time BETWEEN 1 AND espf.max_timeout() THEN
    PERFORM espf.refuse('espf.http_handlers.max_wait_time', format('must be > 0 and at most %s seconds, not %s', espf.max_timeout(), coalesce(r.max_wait_time::text, 'null')));
  END IF;
  IF r.request_timeout IS NULL OR NOT r.request_timeout BETWEEN 1 AND espf.max_timeout() THEN
    PERFORM espf.refuse('espf.http_handlers.request_timeout', format('must be > 0 and at most %s seconds, not %s', espf.max_timeout(), coalesce(r.request_timeout::text, 'null')));
  END IF;
  IF r.token_rate IS NULL OR NOT (r.token_rate > 0 AND r.token_rate <= espf.max_token_rate()) THEN
    PERFORM espf.refuse('espf.http_handlers.token_rate', format('must be > 0 and at most %s requests per second, not %s', espf.max_token_rate(), coalesce(r.token_rate::text, 'null')));
  END IF;
  IF r.token_burstiness IS NULL OR r.token_burstiness < 1 THEN
    PERFORM espf.refuse('espf.http_handlers.token_burstiness', format('must be >= 1 request, not %s', coalesce(r.token_burstiness::text, 'null')));
  END IF;
  IF r.max_attempts IS NULL OR r.max_attempts < 1 THEN
    PERFORM espf.refuse('espf.http_handlers.max_attempts', format('must be >= 1, not %s', coalesce(r.max_attempts::text, 'null')));
  END IF;
  IF r.retry_delay IS NULL OR NOT (r.retry_delay > 0 AND r.retry_delay <= espf.max_retry_delay()) THEN
    PERFORM espf.refuse('espf.http_handlers.retry_delay', format('must be > 0 and at most %s seconds (7 days), not %s', espf.max_retry_delay(), coalesce(r.retry_delay::text, 'null')));
  END IF;
  IF r.retry_max_delay IS NULL OR NOT (r.retry_max_delay >= r.retry_delay AND r.retry_max_delay <= espf.max_retry_delay()) THEN
    PERFORM espf.refuse('espf.http_handlers.retry_max_delay', format('must be >= retry_delay (%s) and at most %s seconds (7 days), not %s', r.retry_delay, espf.max_retry_delay(), coalesce(r.retry_max_delay::text, 'null')));
  END IF;
  -- The names the receiver knows types by: {"<espf type>": "<its name>", …}.
  IF r.event_names IS NULL OR jsonb_typeof(r.event_names) <> 'object' THEN
    PERFORM espf.refuse('espf.http_handlers.event_names', format('must be a JSON object {"<espf event type>": "<the receiver''s name>"}, not %s', coalesce(r.event_names::text, 'null')));
  END IF;
  FOR k, v IN SELECT j.key, j.value FROM jsonb_each(r.event_names) j ORDER BY j.key LOOP
    IF NOT EXISTS (SELECT 1 FROM espf.event_types t WHERE t.name = k) THEN
      PERFORM espf.refuse('espf.http_handlers.event_names', format('key %L is not an espf event type (not a row of espf.event_types)', k));
    END IF;
    IF jsonb_typeof(v) <> 'string' OR btrim(v #>> '{}') = '' THEN
      PERFORM espf.refuse('espf.http_handlers.event_names', format('key %L maps to %s: the receiver''s name must be a non-empty string', k, CASE WHEN jsonb_typeof(v) = 'string' THEN 'an empty name' ELSE v::text END));
    END IF;
  END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION espf.check_http_handler() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM espf.check_http_settings(NEW);
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

-- espf.status_api (the table and its trigger are in migrations/0003_status_api.sql;
-- the check is kept here with the others, so env:NAME is checked the same way everywhere).
CREATE OR REPLACE FUNCTION espf.check_status_api() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  problem text;
BEGIN
  IF NEW.token IS NOT NULL THEN
    IF NEW.token LIKE 'env:%' THEN
      problem := espf.env_ref_problem(NEW.token);
      IF problem IS NOT NULL THEN
        PERFORM espf.refuse('espf.status_api.token', problem);
      END IF;
    ELSIF length(NEW.token) < 16 OR length(NEW.token) > 1024 OR NEW.token !~ '^[\x21-\x7e]+$' THEN
      PERFORM espf.refuse('espf.status_api.token', 'must be 16 to 1024 printable ASCII characters without spaces, or env:NAME');
    END IF;
  END IF;
  IF NEW.enabled AND NEW.token IS NULL THEN
    PERFORM espf.refuse('espf.status_api.enabled', 'the status API cannot be enabled without a token: set espf.status_api.token first');
  END IF;
  NEW.updated_at := now();
  RETURN NEW;
END
$$;
