-- Capture rule for billing.service_attribute_value: ServiceAttribute/Changed on
-- insert, delete, and an update that changes the value (or moves the row).
-- Variables: owner_type, owner_id, service, name, value, prev_value.
-- i_env is the owner's.
CREATE OR REPLACE FUNCTION espf.capture_service_attribute_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  r billing.service_attribute_value := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
  env int;
BEGIN
  env := CASE r.owner_type
    WHEN 'account'  THEN (SELECT i_env FROM billing.account  WHERE i_account  = r.owner_id)
    WHEN 'customer' THEN (SELECT i_env FROM billing.customer WHERE i_customer = r.owner_id)
    WHEN 'product'  THEN (SELECT i_env FROM billing.product  WHERE i_product  = r.owner_id)
  END;
  PERFORM espf.emit(TG_ARGV[0], coalesce(env, 1), jsonb_build_object(
    'owner_type', r.owner_type, 'owner_id', r.owner_id, 'service', r.service, 'name', r.name,
    'value', CASE WHEN TG_OP = 'DELETE' THEN NULL ELSE NEW.value END,
    'prev_value', CASE WHEN TG_OP = 'INSERT' THEN NULL ELSE OLD.value END));
  RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER espf_service_attribute_inserted
  AFTER INSERT ON billing.service_attribute_value FOR EACH ROW
  EXECUTE FUNCTION espf.capture_service_attribute_changed('ServiceAttribute/Changed');

CREATE OR REPLACE TRIGGER espf_service_attribute_updated
  AFTER UPDATE ON billing.service_attribute_value FOR EACH ROW
  WHEN (OLD.value IS DISTINCT FROM NEW.value
        OR (OLD.owner_type, OLD.owner_id, OLD.service, OLD.name)
           IS DISTINCT FROM (NEW.owner_type, NEW.owner_id, NEW.service, NEW.name))
  EXECUTE FUNCTION espf.capture_service_attribute_changed('ServiceAttribute/Changed');

CREATE OR REPLACE TRIGGER espf_service_attribute_deleted
  AFTER DELETE ON billing.service_attribute_value FOR EACH ROW
  EXECUTE FUNCTION espf.capture_service_attribute_changed('ServiceAttribute/Changed');
