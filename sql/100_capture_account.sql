-- Capture rules for billing.account. Each trigger is one event type: its WHEN
-- clause is the transition, its argument the type, its function the variables.

-- Types whose only own variable is i_account.
CREATE OR REPLACE FUNCTION espf.capture_account_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM espf.emit(TG_ARGV[0], NEW.i_env, jsonb_build_object('i_account', NEW.i_account));
  RETURN NULL;
END
$$;

-- Account/New: i_account, id, i_customer, i_product
CREATE OR REPLACE FUNCTION espf.capture_account_new() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM espf.emit(TG_ARGV[0], NEW.i_env, jsonb_build_object(
    'i_account', NEW.i_account, 'id', NEW.id, 'i_customer', NEW.i_customer, 'i_product', NEW.i_product));
  RETURN NULL;
END
$$;
CREATE OR REPLACE TRIGGER espf_account_new
  AFTER INSERT ON billing.account FOR EACH ROW
  EXECUTE FUNCTION espf.capture_account_new('Account/New');

-- Account/ID/Changed: i_account, id, prev_id
CREATE OR REPLACE FUNCTION espf.capture_account_id_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM espf.emit(TG_ARGV[0], NEW.i_env, jsonb_build_object(
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
BEGIN
  PERFORM espf.emit(TG_ARGV[0], NEW.i_env, jsonb_build_object(
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
  WHEN (OLD.balance_control = 'individual' AND NEW.balance_control = 'individual'
        AND espf.account_funds(OLD.billing_model, OLD.balance, OLD.credit_limit) > 0
        AND espf.account_funds(NEW.billing_model, NEW.balance, NEW.credit_limit) <= 0)
  EXECUTE FUNCTION espf.capture_account_event('Account/ZeroAvailableFunds');

-- Account/AvailableFundsAppear: an individual account's available funds go from <= 0 to > 0.
CREATE OR REPLACE TRIGGER espf_account_available_funds_appear
  AFTER UPDATE OF balance, credit_limit, billing_model, balance_control ON billing.account FOR EACH ROW
  WHEN (OLD.balance_control = 'individual' AND NEW.balance_control = 'individual'
        AND espf.account_funds(OLD.billing_model, OLD.balance, OLD.credit_limit) <= 0
        AND espf.account_funds(NEW.billing_model, NEW.balance, NEW.credit_limit) > 0)
  EXECUTE FUNCTION espf.capture_account_event('Account/AvailableFundsAppear');
