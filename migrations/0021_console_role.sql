-- The web console changes configuration under its own role (docs/security.md,
-- "The web console"): every audited change of the console runs
-- `SET LOCAL ROLE espf_console` first (src/db/console.ts, audited), so the
-- login role of `espf run` needs the membership but not its privileges.
--
-- 1. espf_console holds what the audited transaction needs besides the
--    configuration grants of migrations/0011_console.sql: the sender's reads,
--    the audit insert and the functions, through espf_sender.
-- 2. On PostgreSQL 16 and newer, every existing membership in espf_console is
--    made WITH INHERIT FALSE (a role member may SET ROLE to it but does not
--    hold its rights): the sender's login role alone can no longer write
--    configuration. The membership is changed as the grantor that made it;
--    when the migrating role may not act as that grantor (it is not a
--    superuser), a WARNING names the statement for the DBA and the migration
--    goes on. PostgreSQL 15 has no per-membership INHERIT: there the
--    membership keeps its rights (docs/security.md says what that means).
-- Role grants take no table lock.
SET LOCAL lock_timeout = '5s';

GRANT espf_sender TO espf_console;
COMMENT ON ROLE espf_console IS 'espf: what the web console of espf run needs to change configuration and resend (GRANT espf_console TO <the role of espf run> WITH INHERIT FALSE: the console sets it for each change)';

DO $$
DECLARE
  m record;
  stmt text;
BEGIN
  IF current_setting('server_version_num')::int < 160000 THEN
    RETURN;
  END IF;
  FOR m IN EXECUTE $q$
      SELECT a.member::regrole AS member, a.grantor::regrole AS grantor
        FROM pg_auth_members a
       WHERE a.roleid = 'espf_console'::regrole AND a.inherit_option
       ORDER BY a.member, a.grantor $q$
  LOOP
    stmt := format('GRANT espf_console TO %s WITH INHERIT FALSE GRANTED BY %s', m.member, m.grantor);
    BEGIN
      EXECUTE stmt;
    EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
      RAISE WARNING 'espf: % still holds the rights of espf_console (the console''s configuration writes): run as a superuser: %;', m.member, stmt;
    END;
  END LOOP;
END
$$;
