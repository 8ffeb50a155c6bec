-- Capture rules for billing.customer (see 100_capture_account.sql for the shape).

-- Types whose only own variable is i_customer.
-- It writes the outbox row itself (see capture_account_event).
CREATE OR REPLACE FUNCTION espf.capture_customer_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  ev bigint := nextval('espf.events_i_event_seq');
BEGIN
  INSERT INTO espf.events (i_event, event_type, variables)
  VALUES (ev, TG_ARGV[0], jsonb_build_object(
    'i_event', ev, 'i_env', NEW.i_env, 'event_time', espf.event_time(),
    'i_customer', NEW.i_customer));
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
  WHEN (espf.customer_funds_disappear(OLD, NEW))
  EXECUTE FUNCTION espf.capture_customer_event('Customer/ZeroAvailableFunds');

-- Customer/AvailableFundsAppear: credit_limit - balance goes from <= 0 to > 0
CREATE OR REPLACE TRIGGER espf_customer_available_funds_appear
  AFTER UPDATE OF balance, credit_limit ON billing.customer FOR EACH ROW
  WHEN (espf.customer_funds_appear(OLD, NEW))
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
