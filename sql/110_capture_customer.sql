-- Capture rules for billing.customer (see 100_capture_account.sql for the shape).

-- Types whose only own variable is i_customer.
CREATE OR REPLACE FUNCTION espf.capture_customer_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM espf.emit(TG_ARGV[0], NEW.i_env, jsonb_build_object('i_customer', NEW.i_customer));
  RETURN NULL;
END
$$;

-- Customer/New
CREATE OR REPLACE TRIGGER espf_customer_new
  AFTER INSERT ON billing.customer FOR EACH ROW
  EXECUTE FUNCTION espf.capture_customer_event('Customer/New');

-- Customer/Blocked: blocked false -> true
CREATE OR REPLACE TRIGGER espf_customer_blocked
  AFTER UPDATE OF blocked ON billing.customer FOR EACH ROW
  WHEN (NOT OLD.blocked AND NEW.blocked)
  EXECUTE FUNCTION espf.capture_customer_event('Customer/Blocked');

-- Customer/Unblocked: blocked true -> false
CREATE OR REPLACE TRIGGER espf_customer_unblocked
  AFTER UPDATE OF blocked ON billing.customer FOR EACH ROW
  WHEN (OLD.blocked AND NOT NEW.blocked)
  EXECUTE FUNCTION espf.capture_customer_event('Customer/Unblocked');

-- Customer/ZeroAvailableFunds: credit_limit - balance goes from > 0 to <= 0
CREATE OR REPLACE TRIGGER espf_customer_zero_available_funds
  AFTER UPDATE OF balance, credit_limit ON billing.customer FOR EACH ROW
  WHEN (espf.customer_funds(OLD.balance, OLD.credit_limit) > 0
        AND espf.customer_funds(NEW.balance, NEW.credit_limit) <= 0)
  EXECUTE FUNCTION espf.capture_customer_event('Customer/ZeroAvailableFunds');

-- Customer/AvailableFundsAppear: credit_limit - balance goes from <= 0 to > 0
CREATE OR REPLACE TRIGGER espf_customer_available_funds_appear
  AFTER UPDATE OF balance, credit_limit ON billing.customer FOR EACH ROW
  WHEN (espf.customer_funds(OLD.balance, OLD.credit_limit) <= 0
        AND espf.customer_funds(NEW.balance, NEW.credit_limit) > 0)
  EXECUTE FUNCTION espf.capture_customer_event('Customer/AvailableFundsAppear');

-- Customer/Status/Suspend: bill_status -> suspended
CREATE OR REPLACE TRIGGER espf_customer_status_suspend
  AFTER UPDATE OF bill_status ON billing.customer FOR EACH ROW
  WHEN (OLD.bill_status <> 'suspended' AND NEW.bill_status = 'suspended')
  EXECUTE FUNCTION espf.capture_customer_event('Customer/Status/Suspend');

-- Customer/Status/Unsuspend: bill_status suspended -> open
CREATE OR REPLACE TRIGGER espf_customer_status_unsuspend
  AFTER UPDATE OF bill_status ON billing.customer FOR EACH ROW
  WHEN (OLD.bill_status = 'suspended' AND NEW.bill_status = 'open')
  EXECUTE FUNCTION espf.capture_customer_event('Customer/Status/Unsuspend');
