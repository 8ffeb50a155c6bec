-- env:NAME in a configuration row may only name a variable whose name starts
-- with espf.secret_env_prefix() (docs/security.md, "Secrets: env:NAME"): who
-- may write a row (a console admin, a DBA) cannot make espf run send
-- DATABASE_URL or another variable of its environment to a receiver. The
-- resolver of espf run applies the same rule (src/security/secret-ref.ts).
-- The syntax of NAME is checked by espf.env_ref_problem (sql/020_config_checks.sql).

CREATE OR REPLACE FUNCTION espf.secret_env_prefix() RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT 'ESPF_SECRET_' $$;

-- NULL when `v` is not a well-formed env:NAME or names a variable under the prefix; else why not.
CREATE OR REPLACE FUNCTION espf.env_prefix_problem(v text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN v IS NULL OR v NOT LIKE 'env:%' OR espf.env_ref_problem(v) IS NOT NULL THEN NULL
              WHEN substr(v, 5) LIKE espf.secret_env_prefix() || '_%' THEN NULL
              ELSE format('%s names a variable espf run does not read for rows: the name must start with %s (docs/security.md)',
                          espf.quote_short(v), espf.secret_env_prefix()) END
$$;

-- The columns named by the trigger's arguments, when inserted or changed. A row
-- written before this rule keeps its value until that column is written again.
CREATE OR REPLACE FUNCTION espf.check_secret_env_names() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  col text;
  problem text;
BEGIN
  FOREACH col IN ARRAY TG_ARGV LOOP
    CONTINUE WHEN TG_OP = 'UPDATE' AND (to_jsonb(OLD) ->> col) IS NOT DISTINCT FROM (to_jsonb(NEW) ->> col);
    problem := espf.env_prefix_problem(to_jsonb(NEW) ->> col);
    IF problem IS NOT NULL THEN
      PERFORM espf.refuse(format('espf.%s.%s', TG_TABLE_NAME, col), problem);
    END IF;
  END LOOP;
  RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER check_secret_env_names BEFORE INSERT OR UPDATE ON espf.http_handlers
  FOR EACH ROW EXECUTE FUNCTION espf.check_secret_env_names('basic_auth_user', 'basic_auth_key', 'custom_auth_type',
                                                            'custom_auth_credentials', 'signature_auth_key_id', 'signature_auth_key');
CREATE OR REPLACE TRIGGER check_secret_env_names BEFORE INSERT OR UPDATE ON espf.status_api
  FOR EACH ROW EXECUTE FUNCTION espf.check_secret_env_names('token');
CREATE OR REPLACE TRIGGER check_secret_env_names BEFORE INSERT OR UPDATE ON espf.notifications
  FOR EACH ROW EXECUTE FUNCTION espf.check_secret_env_names('smtp_url');
