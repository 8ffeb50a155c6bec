-- espf.http_handlers.ca_file is an absolute path to a file (docs/security.md,
-- "https receivers and ca_file"): it starts with "/", has no "." or ".."
-- segment, no empty segment, no control character, at most 1024 characters.
-- espf run reads it only when it is a regular file of at most 1 MiB, inside
-- ESPF_CA_DIR when that is set (src/security/ca-file.ts). Checked when the
-- column is inserted or changed: a row written before this rule keeps its value
-- until ca_file is written again.

CREATE OR REPLACE FUNCTION espf.ca_file_problem(v text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN v IS NULL THEN NULL
              WHEN length(v) > 1024 OR v !~ '^/' OR v ~ '[[:cntrl:]]' OR v ~ '(^|/)\.{1,2}(/|$)' OR v ~ '//' OR v ~ '/$'
                THEN format('%s is not an absolute path to a file (like /etc/espf/ca/hss.pem: starting with "/", no "." or ".." segment, no control character, at most 1024 characters)',
                            espf.quote_short(regexp_replace(v, '[[:cntrl:]]', '?', 'g')))
         END
$$;

CREATE OR REPLACE FUNCTION espf.check_ca_file() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  problem text;
BEGIN
  IF TG_OP = 'UPDATE' AND OLD.ca_file IS NOT DISTINCT FROM NEW.ca_file THEN
    RETURN NEW;
  END IF;
  problem := espf.ca_file_problem(NEW.ca_file);
  IF problem IS NOT NULL THEN
    PERFORM espf.refuse('espf.http_handlers.ca_file', problem);
  END IF;
  RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER check_ca_file BEFORE INSERT OR UPDATE ON espf.http_handlers
  FOR EACH ROW EXECUTE FUNCTION espf.check_ca_file();
