-- The console's overview at scale (docs/console.md, "The overview"): finished
-- deliveries counted per handler and per minute of finished_at, so that the
-- overview reads at most a day of minutes per handler instead of the
-- deliveries themselves. Kept exact by statement triggers on
-- espf.event_deliveries (sql/420_delivery_minutes.sql): every statement that
-- inserts, updates, deletes or truncates deliveries adds its difference in
-- one upsert per (handler, minute).
--
-- espf.delivery_minutes_state says from which minute on the counts are kept:
-- the first `espf migrate` with sql/420_delivery_minutes.sql counts the
-- deliveries finished in the last 25 hours (in the transaction that creates
-- the triggers) and sets `kept_from`; a database without older finished
-- deliveries keeps every minute ('-infinity').
-- New tables only: no lock on an existing table.
SET LOCAL lock_timeout = '5s';

CREATE TABLE espf.delivery_minutes (
  handler   text NOT NULL,
  minute    timestamptz NOT NULL,                -- date_trunc('minute', finished_at)
  delivered bigint NOT NULL DEFAULT 0,           -- state DELIVERED or DISPATCHED
  failed    bigint NOT NULL DEFAULT 0,           -- state FAILED
  PRIMARY KEY (handler, minute)
);

CREATE TABLE espf.delivery_minutes_state (
  id        boolean PRIMARY KEY DEFAULT true CONSTRAINT delivery_minutes_state_one_row CHECK (id),
  built     boolean NOT NULL DEFAULT false,
  kept_from timestamptz NOT NULL DEFAULT '-infinity',
  built_at  timestamptz
);
INSERT INTO espf.delivery_minutes_state DEFAULT VALUES;
-- SELECT for espf_sender and espf_reporting: the default privileges of migrations/0006_roles.sql.
-- Only the trigger function (SECURITY DEFINER, its owner's rights) writes them.
