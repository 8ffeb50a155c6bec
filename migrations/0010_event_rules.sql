-- Event rules: capture as configuration rows (docs/dba.md, "Event rules").
-- A rule watches one table and becomes one AFTER ROW trigger on it; the
-- compiler (sql/040_event_rules.sql) creates, replaces and drops those triggers
-- when rule rows are written. The built-in rules (sql/100_builtin_rules.sql)
-- replace the hand-written capture triggers in the transaction of sql/.
--
-- Every statement here takes its locks for a moment only; a billing write that
-- holds a lock on billing.account makes this migration give up after
-- lock_timeout instead of queueing every later billing write behind it
-- (espf migrate tries again).
SET LOCAL lock_timeout = '2s';

-- ── event types: coalescing, and types captured by rules only ───────────────
ALTER TABLE espf.event_types ADD COLUMN coalesce boolean NOT NULL DEFAULT false;
-- origin 'rule': a type espf ships as built-in rules beyond the reference
-- catalogue (disabled until enabled); 'trigger': the reference catalogue.
ALTER TABLE espf.event_types DROP CONSTRAINT event_types_origin_check,
  ADD CONSTRAINT event_types_origin_check CHECK (origin IN ('trigger', 'rule', 'dispatcher'));

-- A coalesced event is recorded as SUPERSEDED: a newer event of its type for the
-- same handler and account was sent instead.
ALTER TABLE espf.event_deliveries DROP CONSTRAINT event_deliveries_state_check,
  ADD CONSTRAINT event_deliveries_state_check
    CHECK (state IN ('PENDING', 'RETRY', 'DELIVERED', 'FAILED', 'DISPATCHED', 'SUPERSEDED')) NOT VALID;

-- ── the rules ──────────────────────────────────────────────────────────────
CREATE TABLE espf.event_rules (
  name       text PRIMARY KEY,
  event_type text NOT NULL REFERENCES espf.event_types ON UPDATE CASCADE,
  source     regclass NOT NULL,
  operations text[] NOT NULL,
  watch      text[],
  condition  text,
  variables  text NOT NULL,
  i_env      text NOT NULL DEFAULT '1',
  builtin    boolean NOT NULL DEFAULT false
);

-- The definition of each built-in rule as espf migrate last installed it: a
-- built-in rule that differs from it was changed by a DBA and is kept.
CREATE TABLE espf.builtin_event_rules (
  name       text PRIMARY KEY,
  event_type text NOT NULL,
  source     text NOT NULL,
  operations text[] NOT NULL,
  watch      text[],
  condition  text,
  variables  text NOT NULL,
  i_env      text NOT NULL
);

-- ── backfills ──────────────────────────────────────────────────────────────
-- One row per `espf backfill` run: its rule, filter and progress (the last key
-- done, so that --resume goes on from there).
CREATE TABLE espf.backfills (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  rule        text NOT NULL,
  event_type  text NOT NULL,
  source      text NOT NULL,
  key_column  text NOT NULL,
  where_sql   text,
  batch_size  int NOT NULL,
  state       text NOT NULL DEFAULT 'running'
    CONSTRAINT backfills_state_check CHECK (state IN ('running', 'done', 'interrupted', 'failed', 'abandoned')),
  last_key    text,                 -- the key of the last row emitted (text form of the key column)
  rows_total  bigint,               -- rows to do when it started
  rows_done   bigint NOT NULL DEFAULT 0,
  events      bigint NOT NULL DEFAULT 0,
  started_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  last_error  text
);
CREATE INDEX backfills_rule_idx ON espf.backfills (rule, id);

-- ── the reference model: expiry date ───────────────────────────────────────
ALTER TABLE billing.account ADD COLUMN expiration_date date;

-- ── more built-in types (disabled; captured by built-in rules) ──────────────
INSERT INTO espf.event_types (name, origin, description) VALUES
  ('Subscriber/Created',             'rule', 'an account was inserted (grouped webhook type)'),
  ('Subscriber/Updated',             'rule', 'a provisioned column of an account changed (grouped webhook type)'),
  ('Subscriber/Deleted',             'rule', 'an account was deleted (grouped webhook type)'),
  ('Customer/Created',               'rule', 'a customer was inserted (grouped webhook type)'),
  ('Customer/Updated',               'rule', 'a provisioned column of a customer changed (grouped webhook type)'),
  ('Customer/Deleted',               'rule', 'a customer was deleted (grouped webhook type)'),
  ('Account/ExpirationDate/Changed', 'rule', 'account.expiration_date changed'),
  ('Customer/Status/Closed',         'rule', 'customer.bill_status -> closed'),
  ('Customer/Name/Changed',          'rule', 'customer.name changed')
ON CONFLICT (name) DO NOTHING;

-- Suspension is coalesced, as the commercial system does.
UPDATE espf.event_types SET coalesce = true WHERE name = 'Customer/Status/Suspend';

-- ── who may write rules ────────────────────────────────────────────────────
-- Rules are SQL that runs inside billing transactions: only the espf owner (the
-- migrating role) and members of espf_admin write them (docs/security.md).
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'espf_admin') THEN
    BEGIN
      CREATE ROLE espf_admin NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;  -- another database's migrate created it meanwhile
    END;
  END IF;
END
$$;
COMMENT ON ROLE espf_admin IS 'espf: write capture rules (espf.event_rules) and switch event types; run backfills';

GRANT USAGE ON SCHEMA espf, billing TO espf_admin;
GRANT SELECT ON ALL TABLES IN SCHEMA espf TO espf_admin;
GRANT INSERT, UPDATE, DELETE ON espf.event_rules TO espf_admin;
GRANT INSERT, UPDATE ON espf.event_types TO espf_admin;
-- What `espf backfill` writes.
GRANT INSERT, UPDATE ON espf.backfills TO espf_admin;
GRANT INSERT ON espf.events TO espf_admin;
GRANT USAGE ON SEQUENCE espf.events_i_event_seq TO espf_admin;
