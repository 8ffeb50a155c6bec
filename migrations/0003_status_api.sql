-- The status API of `espf run` (docs/operations.md):
--   POST /espf/v1/account/i/{i_account}/status
-- lets a receiver that provisions asynchronously report the outcome into
-- espf.account_provisioning_statuses. One settings row; off by default.
CREATE TABLE espf.status_api (
  id         boolean PRIMARY KEY DEFAULT true
    CONSTRAINT status_api_one_row CHECK (id),
  enabled    boolean NOT NULL DEFAULT false,
  -- The bearer token receivers send (Authorization: Bearer <token>), or
  -- 'env:NAME': the token is the value of the environment variable NAME of espf run.
  token      text,
  updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO espf.status_api DEFAULT VALUES;

-- Every refusal names the column and the rule (SQLSTATE 23514, check_violation).
CREATE FUNCTION espf.check_status_api() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.token IS NOT NULL THEN
    IF NEW.token LIKE 'env:%' THEN
      IF substr(NEW.token, 5) !~ '^[A-Za-z_][A-Za-z0-9_]{0,127}$' THEN
        RAISE EXCEPTION '%', format('espf.status_api.token: %L is not a valid env:NAME (NAME: letters, digits and "_", not starting with a digit)', NEW.token)
          USING ERRCODE = '23514', SCHEMA = 'espf', TABLE = 'status_api', COLUMN = 'token';
      END IF;
    ELSIF length(NEW.token) < 16 OR length(NEW.token) > 1024 OR NEW.token !~ '^[\x21-\x7e]+$' THEN
      RAISE EXCEPTION 'espf.status_api.token: must be 16 to 1024 printable ASCII characters without spaces, or env:NAME'
        USING ERRCODE = '23514', SCHEMA = 'espf', TABLE = 'status_api', COLUMN = 'token';
    END IF;
  END IF;
  IF NEW.enabled AND NEW.token IS NULL THEN
    RAISE EXCEPTION 'espf.status_api.enabled: the status API cannot be enabled without a token: set espf.status_api.token first'
      USING ERRCODE = '23514', SCHEMA = 'espf', TABLE = 'status_api', COLUMN = 'enabled';
  END IF;
  NEW.updated_at := now();
  RETURN NEW;
END
$$;
CREATE TRIGGER check_status_api BEFORE INSERT OR UPDATE ON espf.status_api
  FOR EACH ROW EXECUTE FUNCTION espf.check_status_api();

-- The row is the configuration: it is updated, never deleted.
CREATE FUNCTION espf.keep_status_api() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'espf.status_api: the settings row cannot be deleted; set enabled = false instead'
    USING ERRCODE = '23514', SCHEMA = 'espf', TABLE = 'status_api';
END
$$;
CREATE TRIGGER keep_status_api BEFORE DELETE ON espf.status_api
  FOR EACH ROW EXECUTE FUNCTION espf.keep_status_api();
