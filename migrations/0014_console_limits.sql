-- Limits of the web console (docs/console.md, "Security"):
-- trusted_proxies: the addresses (or networks) of reverse proxies whose
--   X-Forwarded-For names the client; from any other peer the header is
--   ignored and the peer's address is the client's (login limiting counts by
--   client address and user name).
-- resend_max_rows: the most deliveries one "Resend all matching" job re-queues.
-- Adding columns with constant defaults rewrites nothing.
SET LOCAL lock_timeout = '5s';

ALTER TABLE espf.console ADD COLUMN trusted_proxies inet[] NOT NULL DEFAULT '{}';
ALTER TABLE espf.console ADD COLUMN resend_max_rows int NOT NULL DEFAULT 100000
  CONSTRAINT console_resend_max_rows_check CHECK (resend_max_rows BETWEEN 1 AND 10000000);
ALTER TABLE espf.console ADD CONSTRAINT console_trusted_proxies_check
  CHECK (array_ndims(trusted_proxies) IS NULL OR array_ndims(trusted_proxies) = 1 AND array_position(trusted_proxies, NULL) IS NULL);
GRANT SELECT (trusted_proxies, resend_max_rows) ON espf.console TO espf_reporting;
