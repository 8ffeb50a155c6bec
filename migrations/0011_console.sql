-- The web console of `espf run` under /console/ (docs/console.md): off until
-- configured. One settings row, its users (scrypt password hashes written by
-- `espf console user add`), server-side sessions, and the audit of every change
-- made through it.
SET LOCAL lock_timeout = '5s';

CREATE TABLE espf.console (
  id             boolean PRIMARY KEY DEFAULT true
    CONSTRAINT console_one_row CHECK (id),
  enabled        boolean NOT NULL DEFAULT false,
  -- Signs the session cookie (HMAC-SHA256). Random per database; never shown.
  session_secret text NOT NULL DEFAULT replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''),
  session_ttl    interval NOT NULL DEFAULT '12 hours'
    CONSTRAINT console_session_ttl_check CHECK (session_ttl >= interval '1 minute' AND session_ttl <= interval '30 days'),
  -- Failed logins allowed per client address and per user name in login_window
  -- (per espf run instance), then 429 until the window has passed.
  login_attempts int NOT NULL DEFAULT 10
    CONSTRAINT console_login_attempts_check CHECK (login_attempts BETWEEN 1 AND 1000),
  login_window   interval NOT NULL DEFAULT '15 minutes'
    CONSTRAINT console_login_window_check CHECK (login_window >= interval '1 second' AND login_window <= interval '1 day'),
  updated_at     timestamptz NOT NULL DEFAULT now()
);
INSERT INTO espf.console DEFAULT VALUES;

CREATE TABLE espf.console_users (
  name          text PRIMARY KEY
    CONSTRAINT console_users_name_check CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,62}$'),
  role          text NOT NULL
    CONSTRAINT console_users_role_check CHECK (role IN ('viewer', 'admin')),
  -- scrypt$N$r$p$<salt base64>$<hash base64>: never the password itself.
  password_hash text NOT NULL
    CONSTRAINT console_users_password_hash_check CHECK (password_hash ~ '^scrypt\$[0-9]+\$[0-9]+\$[0-9]+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$'),
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);

-- A session: the cookie carries a random id (signed); only its SHA-256 is stored.
CREATE TABLE espf.console_sessions (
  id_sha256  bytea PRIMARY KEY,
  user_name  text NOT NULL REFERENCES espf.console_users (name) ON UPDATE CASCADE ON DELETE CASCADE,
  csrf_token text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL
);
CREATE INDEX console_sessions_expires_at_idx ON espf.console_sessions (expires_at);

-- Every change made in the console, in the transaction of the change: who,
-- what, the row before and after (secret columns shown as "(set)").
CREATE TABLE espf.console_audit (
  i_audit   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at        timestamptz NOT NULL DEFAULT now(),
  user_name text NOT NULL,
  action    text NOT NULL,
  target    text,
  before    jsonb,
  after     jsonb
);
CREATE INDEX console_audit_at_idx ON espf.console_audit (at);

-- The console's subscriber page (deliveries of one account), failures page and
-- overview (failures of the last 24 hours).
-- On a large espf.event_deliveries build them first without blocking the sender:
--   CREATE INDEX CONCURRENTLY IF NOT EXISTS event_deliveries_account_idx ON espf.event_deliveries (i_account, i_event);
--   CREATE INDEX CONCURRENTLY IF NOT EXISTS event_deliveries_failed_idx ON espf.event_deliveries (i_event, handler) INCLUDE (created_at, event_type) WHERE state = 'FAILED';
--   CREATE INDEX CONCURRENTLY IF NOT EXISTS event_deliveries_failed_at_idx ON espf.event_deliveries (finished_at) WHERE state = 'FAILED';
-- and this migration finds them there.
CREATE INDEX IF NOT EXISTS event_deliveries_account_idx ON espf.event_deliveries (i_account, i_event);
CREATE INDEX IF NOT EXISTS event_deliveries_failed_idx ON espf.event_deliveries (i_event, handler) INCLUDE (created_at, event_type) WHERE state = 'FAILED';
CREATE INDEX IF NOT EXISTS event_deliveries_failed_at_idx ON espf.event_deliveries (finished_at) WHERE state = 'FAILED';

-- espf run serves the console: it reads users and writes sessions and the audit.
-- Changes of configuration through the console need the table grants a DBA
-- gives (docs/console.md): GRANT espf_console TO <the role of espf run>.
GRANT SELECT, INSERT, UPDATE, DELETE ON espf.console_sessions TO espf_sender;
GRANT INSERT ON espf.console_audit TO espf_sender;
REVOKE SELECT ON espf.console, espf.console_users, espf.console_sessions FROM espf_reporting;
GRANT SELECT (id, enabled, session_ttl, login_attempts, login_window, updated_at) ON espf.console TO espf_reporting;
GRANT SELECT (name, role, created_at, updated_at) ON espf.console_users TO espf_reporting;

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'espf_console') THEN
    BEGIN
      CREATE ROLE espf_console NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;  -- another database's migrate created it meanwhile
    END;
  END IF;
END
$$;
COMMENT ON ROLE espf_console IS 'espf: what the web console of espf run needs to change configuration and resend (grant it to the role of espf run)';
GRANT USAGE ON SCHEMA espf TO espf_console;
GRANT UPDATE (enabled) ON espf.event_types TO espf_console;
GRANT UPDATE (enabled) ON espf.handlers TO espf_console;
GRANT INSERT, DELETE ON espf.subscriptions TO espf_console;
GRANT UPDATE ON espf.http_handlers TO espf_console;
GRANT UPDATE ON espf.event_deliveries TO espf_console;
