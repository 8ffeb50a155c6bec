-- The built-in rules: the event catalogue (README, "Event catalogue") on the
-- reference billing model, as rows of espf.event_rules (compiled by
-- sql/025_event_rules.sql). espf migrate adds a missing built-in rule, brings an
-- unchanged one up to this definition, and keeps one a DBA changed (it says so).
--
-- Transitions that need more than a comparison or two are PL/pgSQL predicates
-- (sql/010_functions.sql, "Cost of capture"): the funds transitions, and the
-- change of a provisioned column (Subscriber/Updated, Customer/Updated). Rules
-- on tables other than the account's or customer's own take the owner's row
-- lock in `i_env` (evaluated before i_event is taken: see espf.lock_account), so
-- that i_event increases in commit order for any one account or customer. A
-- rule that can emit two events for one row (a SIM card or an attribute moved
-- between owners) writes its variables as jsonb[]: one event per non-null
-- element, in order, each element's own i_env winning over the rule's.

CREATE OR REPLACE FUNCTION espf.shipped_event_rules() RETURNS SETOF espf.builtin_event_rules
LANGUAGE sql IMMUTABLE AS $fn$
VALUES
-- ── billing.account ─────────────────────────────────────────────────────────
  ('Account/New', 'Account/New', 'billing.account', '{INSERT}'::text[], NULL::text[], NULL::text,
   $v$jsonb_build_object('i_account', NEW.i_account, 'id', NEW.id, 'i_customer', NEW.i_customer, 'i_product', NEW.i_product)$v$, 'NEW.i_env'),
  ('Account/ID/Changed', 'Account/ID/Changed', 'billing.account', '{UPDATE}', '{id}', 'OLD.id IS DISTINCT FROM NEW.id',
   $v$jsonb_build_object('i_account', NEW.i_account, 'id', NEW.id, 'prev_id', OLD.id)$v$, 'NEW.i_env'),
  ('Account/Password/Changed', 'Account/Password/Changed', 'billing.account', '{UPDATE}', '{password}',
   'OLD.password IS DISTINCT FROM NEW.password',
   $v$jsonb_build_object('i_account', NEW.i_account)$v$, 'NEW.i_env'),
  ('Account/ServicePassword/Changed', 'Account/ServicePassword/Changed', 'billing.account', '{UPDATE}', '{service_password}',
   'OLD.service_password IS DISTINCT FROM NEW.service_password',
   $v$jsonb_build_object('i_account', NEW.i_account)$v$, 'NEW.i_env'),
  ('Account/Product/Changed', 'Account/Product/Changed', 'billing.account', '{UPDATE}', '{i_product}',
   'OLD.i_product IS DISTINCT FROM NEW.i_product',
   $v$jsonb_build_object('i_account', NEW.i_account, 'i_product', NEW.i_product, 'prev_i_product', OLD.i_product)$v$, 'NEW.i_env'),
  ('Account/Blocked', 'Account/Blocked', 'billing.account', '{UPDATE}', '{blocked}', 'NOT OLD.blocked AND NEW.blocked',
   $v$jsonb_build_object('i_account', NEW.i_account)$v$, 'NEW.i_env'),
  ('Account/Unblocked', 'Account/Unblocked', 'billing.account', '{UPDATE}', '{blocked}', 'OLD.blocked AND NOT NEW.blocked',
   $v$jsonb_build_object('i_account', NEW.i_account)$v$, 'NEW.i_env'),
  -- An individual account's funds (a subordinate account's are its customer's:
  -- Customer/ZeroAvailableFunds and the CustomerToAccountsDispatcher).
  ('Account/ZeroAvailableFunds', 'Account/ZeroAvailableFunds', 'billing.account', '{UPDATE}',
   '{balance,credit_limit,billing_model,balance_control}', 'espf.account_funds_lost(OLD, NEW)',
   $v$jsonb_build_object('i_account', NEW.i_account)$v$, 'NEW.i_env'),
  ('Account/AvailableFundsAppear', 'Account/AvailableFundsAppear', 'billing.account', '{UPDATE}',
   '{balance,credit_limit,billing_model,balance_control}', 'espf.account_funds_lost(NEW, OLD)',
   $v$jsonb_build_object('i_account', NEW.i_account)$v$, 'NEW.i_env'),
  ('Account/ExpirationDate/Changed', 'Account/ExpirationDate/Changed', 'billing.account', '{UPDATE}', '{expiration_date}',
   'OLD.expiration_date IS DISTINCT FROM NEW.expiration_date',
   $v$jsonb_build_object('i_account', NEW.i_account, 'expiration_date', NEW.expiration_date, 'prev_expiration_date', OLD.expiration_date)$v$, 'NEW.i_env'),
  -- Grouped webhook types. Subscriber/Updated: a change of a column a receiver
  -- provisions from (never balance, which changes on every charge).
  ('Subscriber/Created', 'Subscriber/Created', 'billing.account', '{INSERT}', NULL, NULL,
   $v$jsonb_build_object('i_account', NEW.i_account)$v$, 'NEW.i_env'),
  ('Subscriber/Updated', 'Subscriber/Updated', 'billing.account', '{UPDATE}',
   '{id,i_customer,i_product,i_env,role,billing_model,balance_control,credit_limit,blocked,password,service_password,activation_date,expiration_date}',
   'espf.account_provisioning_changed(OLD, NEW)',
   $v$jsonb_build_object('i_account', NEW.i_account)$v$, 'NEW.i_env'),
  ('Subscriber/Deleted', 'Subscriber/Deleted', 'billing.account', '{DELETE}', NULL, NULL,
   $v$jsonb_build_object('i_account', OLD.i_account)$v$, 'OLD.i_env'),
-- ── billing.customer ────────────────────────────────────────────────────────
  ('Customer/New', 'Customer/New', 'billing.customer', '{INSERT}', NULL, NULL,
   $v$jsonb_build_object('i_customer', NEW.i_customer)$v$, 'NEW.i_env'),
  ('Customer/Blocked', 'Customer/Blocked', 'billing.customer', '{UPDATE}', '{blocked}', 'NOT OLD.blocked AND NEW.blocked',
   $v$jsonb_build_object('i_customer', NEW.i_customer)$v$, 'NEW.i_env'),
  ('Customer/Unblocked', 'Customer/Unblocked', 'billing.customer', '{UPDATE}', '{blocked}', 'OLD.blocked AND NOT NEW.blocked',
   $v$jsonb_build_object('i_customer', NEW.i_customer)$v$, 'NEW.i_env'),
  ('Customer/ZeroAvailableFunds', 'Customer/ZeroAvailableFunds', 'billing.customer', '{UPDATE}', '{balance,credit_limit}',
   'espf.customer_funds_lost(OLD, NEW)',
   $v$jsonb_build_object('i_customer', NEW.i_customer)$v$, 'NEW.i_env'),
  ('Customer/AvailableFundsAppear', 'Customer/AvailableFundsAppear', 'billing.customer', '{UPDATE}', '{balance,credit_limit}',
   'espf.customer_funds_lost(NEW, OLD)',
   $v$jsonb_build_object('i_customer', NEW.i_customer)$v$, 'NEW.i_env'),
  ('Customer/Status/Suspend', 'Customer/Status/Suspend', 'billing.customer', '{UPDATE}', '{bill_status}',
   $v$OLD.bill_status <> 'suspended' AND NEW.bill_status = 'suspended'$v$,
   $v$jsonb_build_object('i_customer', NEW.i_customer)$v$, 'NEW.i_env'),
  ('Customer/Status/Unsuspend', 'Customer/Status/Unsuspend', 'billing.customer', '{UPDATE}', '{bill_status}',
   $v$OLD.bill_status = 'suspended' AND NEW.bill_status = 'open'$v$,
   $v$jsonb_build_object('i_customer', NEW.i_customer)$v$, 'NEW.i_env'),
  ('Customer/Status/Closed', 'Customer/Status/Closed', 'billing.customer', '{UPDATE}', '{bill_status}',
   $v$OLD.bill_status <> 'closed' AND NEW.bill_status = 'closed'$v$,
   $v$jsonb_build_object('i_customer', NEW.i_customer)$v$, 'NEW.i_env'),
  ('Customer/Name/Changed', 'Customer/Name/Changed', 'billing.customer', '{UPDATE}', '{name}',
   'OLD.name IS DISTINCT FROM NEW.name',
   $v$jsonb_build_object('i_customer', NEW.i_customer, 'name', NEW.name, 'prev_name', OLD.name)$v$, 'NEW.i_env'),
  ('Customer/Created', 'Customer/Created', 'billing.customer', '{INSERT}', NULL, NULL,
   $v$jsonb_build_object('i_customer', NEW.i_customer)$v$, 'NEW.i_env'),
  -- Customer/Updated: a change of a column a receiver provisions from (never balance).
  ('Customer/Updated', 'Customer/Updated', 'billing.customer', '{UPDATE}', '{name,i_env,credit_limit,blocked,bill_status}',
   'espf.customer_provisioning_changed(OLD, NEW)',
   $v$jsonb_build_object('i_customer', NEW.i_customer)$v$, 'NEW.i_env'),
  ('Customer/Deleted', 'Customer/Deleted', 'billing.customer', '{DELETE}', NULL, NULL,
   $v$jsonb_build_object('i_customer', OLD.i_customer)$v$, 'OLD.i_env'),
-- ── billing.sim_card: Account/SIMCardAssignment ─────────────────────────────
-- One event per account that gained or lost the card (a move: the account that
-- lost it first), and one when the IMSI of an assigned card changes.
  ('Account/SIMCardAssignment:insert', 'Account/SIMCardAssignment', 'billing.sim_card', '{INSERT}', NULL,
   'NEW.i_account IS NOT NULL',
   $v$jsonb_build_object('i_account', NEW.i_account, 'imsi', NEW.imsi, 'prev_imsi', NULL)$v$,
   'espf.lock_account(NEW.i_account)'),
  ('Account/SIMCardAssignment:update', 'Account/SIMCardAssignment', 'billing.sim_card', '{UPDATE}', '{i_account,imsi}',
   'OLD.i_account IS DISTINCT FROM NEW.i_account OR (NEW.i_account IS NOT NULL AND OLD.imsi IS DISTINCT FROM NEW.imsi)',
   $v$ARRAY[
    CASE WHEN OLD.i_account IS NOT NULL AND OLD.i_account IS DISTINCT FROM NEW.i_account THEN
      jsonb_build_object('i_env', espf.lock_account(OLD.i_account), 'i_account', OLD.i_account, 'imsi', NULL, 'prev_imsi', OLD.imsi) END,
    CASE WHEN NEW.i_account IS NOT NULL THEN
      jsonb_build_object('i_env', espf.lock_account(NEW.i_account), 'i_account', NEW.i_account, 'imsi', NEW.imsi,
                         'prev_imsi', CASE WHEN OLD.i_account = NEW.i_account THEN OLD.imsi END) END]$v$,
   '1'),
  ('Account/SIMCardAssignment:delete', 'Account/SIMCardAssignment', 'billing.sim_card', '{DELETE}', NULL,
   'OLD.i_account IS NOT NULL',
   $v$jsonb_build_object('i_account', OLD.i_account, 'imsi', NULL, 'prev_imsi', OLD.imsi)$v$,
   'espf.lock_account(OLD.i_account)'),
-- ── billing.service_attribute_value: ServiceAttribute/Changed ───────────────
-- Insert, delete, and an update that changes the value; an update that moves the
-- row to another owner, service or name is a delete of the old attribute and an
-- insert of the new one (two events, the old one first). i_env is the owner's.
  ('ServiceAttribute/Changed:insert', 'ServiceAttribute/Changed', 'billing.service_attribute_value', '{INSERT}', NULL, NULL,
   $v$jsonb_build_object('owner_type', NEW.owner_type, 'owner_id', NEW.owner_id, 'service', NEW.service, 'name', NEW.name, 'value', NEW.value, 'prev_value', NULL)$v$,
   'espf.owner_env(NEW.owner_type, NEW.owner_id)'),
  ('ServiceAttribute/Changed:update', 'ServiceAttribute/Changed', 'billing.service_attribute_value', '{UPDATE}', NULL,
   $v$OLD.value IS DISTINCT FROM NEW.value OR (OLD.owner_type, OLD.owner_id, OLD.service, OLD.name) IS DISTINCT FROM (NEW.owner_type, NEW.owner_id, NEW.service, NEW.name)$v$,
   $v$ARRAY[
    CASE WHEN (OLD.owner_type, OLD.owner_id, OLD.service, OLD.name) IS DISTINCT FROM (NEW.owner_type, NEW.owner_id, NEW.service, NEW.name) THEN
      jsonb_build_object('i_env', espf.owner_env(OLD.owner_type, OLD.owner_id), 'owner_type', OLD.owner_type, 'owner_id', OLD.owner_id,
                         'service', OLD.service, 'name', OLD.name, 'value', NULL, 'prev_value', OLD.value) END,
    jsonb_build_object('i_env', espf.owner_env(NEW.owner_type, NEW.owner_id), 'owner_type', NEW.owner_type, 'owner_id', NEW.owner_id,
                       'service', NEW.service, 'name', NEW.name, 'value', NEW.value,
                       'prev_value', CASE WHEN (OLD.owner_type, OLD.owner_id, OLD.service, OLD.name) IS NOT DISTINCT FROM (NEW.owner_type, NEW.owner_id, NEW.service, NEW.name) THEN OLD.value END)]$v$,
   '1'),
  ('ServiceAttribute/Changed:delete', 'ServiceAttribute/Changed', 'billing.service_attribute_value', '{DELETE}', NULL, NULL,
   $v$jsonb_build_object('owner_type', OLD.owner_type, 'owner_id', OLD.owner_id, 'service', OLD.service, 'name', OLD.name, 'value', NULL, 'prev_value', OLD.value)$v$,
   'espf.owner_env(OLD.owner_type, OLD.owner_id)')
$fn$;

-- Brings the built-in rules up to the definitions above (see the top of this
-- file). Returns the names of the built-in rules it kept as a DBA changed them.
CREATE OR REPLACE FUNCTION espf.install_builtin_rules() RETURNS text[]
LANGUAGE plpgsql AS $$
DECLARE
  s    espf.builtin_event_rules;
  p    espf.builtin_event_rules;
  r    espf.event_rules;
  kept text[] := '{}';
  t    record;
BEGIN
  -- The hand-written capture triggers these rules replace (espf before event
  -- rules). Dropped only when present: DROP TRIGGER IF EXISTS would lock the
  -- billing table on every migrate.
  FOR t IN SELECT g.tgname, g.tgrelid::regclass AS tbl
             FROM pg_trigger g JOIN pg_proc f ON f.oid = g.tgfoid
            WHERE f.pronamespace = 'espf'::regnamespace AND NOT g.tgisinternal
              AND f.proname IN ('capture_account_event', 'capture_account_new', 'capture_account_id_changed',
                                'capture_account_product_changed', 'capture_customer_event',
                                'capture_sim_card_assignment', 'capture_service_attribute_changed') LOOP
    EXECUTE format('DROP TRIGGER %I ON %s', t.tgname, t.tbl);
  END LOOP;
  DROP FUNCTION IF EXISTS espf.capture_account_event(), espf.capture_account_new(), espf.capture_account_id_changed(),
    espf.capture_account_product_changed(), espf.capture_customer_event(), espf.capture_sim_card_assignment(),
    espf.capture_service_attribute_changed();
  DROP FUNCTION IF EXISTS espf.emit_service_attribute_changed(text, billing.service_attribute_value, text, text);

  FOR s IN SELECT * FROM espf.shipped_event_rules() LOOP
    SELECT * INTO p FROM espf.builtin_event_rules b WHERE b.name = s.name;
    SELECT * INTO r FROM espf.event_rules e WHERE e.name = s.name;
    IF r.name IS NULL THEN
      INSERT INTO espf.event_rules (name, event_type, source, operations, watch, condition, variables, i_env, builtin)
      VALUES (s.name, s.event_type, s.source::regclass, s.operations, s.watch, s.condition, s.variables, s.i_env, true);
    ELSIF (r.event_type, r.source, r.operations, r.watch, r.condition, r.variables, r.i_env)
          IS NOT DISTINCT FROM (s.event_type, s.source::regclass, s.operations, s.watch, s.condition, s.variables, s.i_env) THEN
      NULL;  -- already this definition
    ELSIF p.name IS NOT NULL AND r.builtin
          AND (r.event_type, r.source, r.operations, r.watch, r.condition, r.variables, r.i_env)
              IS NOT DISTINCT FROM (p.event_type, to_regclass(p.source), p.operations, p.watch, p.condition, p.variables, p.i_env) THEN
      -- unchanged since the last migrate: this release's definition
      UPDATE espf.event_rules e
         SET event_type = s.event_type, source = s.source::regclass, operations = s.operations, watch = s.watch,
             condition = s.condition, variables = s.variables, i_env = s.i_env
       WHERE e.name = s.name;
    ELSE
      kept := kept || s.name;
    END IF;
    INSERT INTO espf.builtin_event_rules VALUES (s.*)
      ON CONFLICT (name) DO UPDATE
        SET event_type = EXCLUDED.event_type, source = EXCLUDED.source, operations = EXCLUDED.operations,
            watch = EXCLUDED.watch, condition = EXCLUDED.condition, variables = EXCLUDED.variables, i_env = EXCLUDED.i_env;
  END LOOP;
  RETURN kept;
END
$$;
REVOKE EXECUTE ON FUNCTION espf.install_builtin_rules() FROM PUBLIC;

SELECT espf.install_builtin_rules();
