-- Capture rules for billing.account. Each trigger is one event type: its WHEN
-- clause is the transition, its argument the type, its function the variables.
-- Each function writes the outbox row itself (one PL/pgSQL call per captured
-- row; see "Cost of capture" in 010_functions.sql): i_event from the sequence,
-- and every variable, the common ones (i_event, i_env, event_time) included, in
-- one jsonb_build_object.

-- Types whose only own variable is i_account.
CREATE OR REPLACE FUNCTION espf.capture_account_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  ev bigint := nextval('espf.events_i_event_seq');
BEGIN
  INSERT INTO espf.events (i_event, event_type, variables)
  VALUES (ev, TG_ARGV[0], jsonb_build_object(
    'i_event', ev, 'i_env', NEW.i_env, 'event_time', espf.event_time(),
    'i_account', NEW.i_account));
  RETURN NULL;
END
$$;

-- Account/New: i_account, id, i_customer, i_product
CREATE OR REPLACE FUNCTION espf.capture_account_new() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  ev bigint := nextval('espf.events_i_event_seq');
BEGIN
  INSERT INTO espf.events (i_event, event_type, variables)
  VALUES (ev, TG_ARGV[0], jsonb_build_object(
    'i_event', ev, 'i_env', NEW.i_env, 'event_time', espf.event_time(),
    'i_account', NEW.i_account, 'id', NEW.id, 'i_customer', NEW.i_customer, 'i_product', NEW.i_product));
  RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER espf_account_new
  AFTER INSERT ON billing.account FOR EACH ROW
  EXECUTE FUNCTION espf.capture_account_new('Account/New');

-- Account/ID/Changed: i_account, id, prev_id
CREATE OR REPLACE FUNCTION espf.capture_account_id_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  ev bigint := nextval('espf.events_i_event_seq');
BEGIN
  INSERT INTO espf.events (i_event, event_type, variables)
  VALUES (ev, TG_ARGV[0], jsonb_build_object(
    'i_event', ev, 'i_env', NEW.i_env, 'event_time', espf.event_time(),
    'i_account', NEW.i_account, 'id', NEW.id, 'prev_id', OLD.id));
  RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER espf_account_id_changed
  AFTER UPDATE OF id ON billing.account FOR EACH ROW
  WHEN (OLD.id IS DISTINCT FROM NEW.id)
  EXECUTE FUNCTION espf.capture_account_id_changed('Account/ID/Changed');

-- Account/Password/Changed: i_account (never the password)
CREATE OR REPLACE TRIGGER espf_account_password_changed
  AFTER UPDATE OF password ON billing.account FOR EACH ROW
  WHEN (OLD.password IS DISTINCT FROM NEW.password)
  EXECUTE FUNCTION espf.capture_account_event('Account/Password/Changed');

-- Account/ServicePassword/Changed: i_account (never the password)
CREATE OR REPLACE TRIGGER espf_account_service_password_changed
  AFTER UPDATE OF service_password ON billing.account FOR EACH ROW
  WHEN (OLD.service_password IS DISTINCT FROM NEW.service_password)
  EXECUTE FUNCTION espf.capture_account_event('Account/ServicePassword/Changed');

-- Account/Product/Changed: i_account, i_product, prev_i_product
CREATE OR REPLACE FUNCTION espf.capture_account_product_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  ev bigint := nextval('espf.events_i_event_seq');
BEGIN
  INSERT INTO espf.events (i_event, event_type, variables)
  VALUES (ev, TG_ARGV[0], jsonb_build_object(
    'i_event', ev, 'i_env', NEW.i_env, 'event_time', espf.event_time(),
    'i_account', NEW.i_account, 'i_product', NEW.i_product, 'prev_i_product', OLD.i_product));
  RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER espf_account_product_changed
  AFTER UPDATE OF i_product ON billing.account FOR EACH ROW
  WHEN (OLD.i_product IS DISTINCT FROM NEW.i_product)
  EXECUTE FUNCTION espf.capture_account_product_changed('Account/Product/Changed');

-- Account/Blocked: blocked false -> true
CREATE OR REPLACE TRIGGER espf_account_blocked
  AFTER UPDATE OF blocked ON billing.account FOR EACH ROW
  WHEN (NOT OLD.blocked AND NEW.blocked)
  EXECUTE FUNCTION espf.capture_account_event('Account/Blocked');

-- Account/Unblocked: blocked true -> false
CREATE OR REPLACE TRIGGER espf_account_unblocked
  AFTER UPDATE OF blocked ON billing.account FOR EACH ROW
  WHEN (OLD.blocked AND NOT NEW.blocked)
  EXECUTE FUNCTION espf.capture_account_event('Account/Unblocked');

-- Account/ZeroAvailableFunds: an individual account's available funds go from > 0 to <= 0.
-- (A subordinate account's funds are its customer's: see Customer/ZeroAvailableFunds
-- and the CustomerToAccountsDispatcher.)
CREATE OR REPLACE TRIGGER espf_account_zero_available_funds
  AFTER UPDATE OF balance, credit_limit, billing_model, balance_control ON billing.account FOR EACH ROW
  WHEN (espf.account_funds_disappear(OLD, NEW))
  EXECUTE FUNCTION espf.capture_account_event('Account/ZeroAvailableFunds');

-- Account/AvailableFundsAppear: an individual account's available funds go from <= 0 to > 0.
-- (Both funds rules are PL/pgSQL predicates in 010_functions.sql: a WHEN clause
-- spelled out here, or calling the inlinable espf.account_funds, was copied,
-- parsed and planned again on every balance UPDATE.)
CREATE OR REPLACE TRIGGER espf_account_available_funds_appear
  AFTER UPDATE OF balance, credit_limit, billing_model, balance_control ON billing.account FOR EACH ROW
  WHEN (espf.account_funds_appear(OLD, NEW))
  EXECUTE FUNCTION espf.capture_account_event('Account/AvailableFundsAppear');
