-- Capture rule for billing.service_attribute_value: ServiceAttribute/Changed on
-- insert, delete, and an update that changes the value. An update that moves the
-- row to another owner, service or name is a delete of the old attribute and an
-- insert of the new one: two events, the old one first.
-- Variables: owner_type, owner_id, service, name, value, prev_value.
-- i_env is the owner's; an account or customer owner's row is locked before the
-- i_event is taken (see espf.lock_account in 010_functions.sql).
CREATE OR REPLACE FUNCTION espf.emit_service_attribute_changed(
  event_type text, r billing.service_attribute_value, value text, prev_value text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  env int;
  ev  bigint;
BEGIN
  env := CASE r.owner_type
    WHEN 'account'  THEN espf.lock_account(r.owner_id)
    WHEN 'customer' THEN espf.lock_customer(r.owner_id)
    WHEN 'product'  THEN (SELECT p.i_env FROM billing.product p WHERE p.i_product = r.owner_id)
  END;
  ev := nextval('espf.events_i_event_seq');
  INSERT INTO espf.events (i_event, event_type, variables)
  VALUES (ev, emit_service_attribute_changed.event_type, jsonb_build_object(
    'i_event', ev, 'i_env', coalesce(env, 1), 'event_time', espf.event_time(),
    'owner_type', r.owner_type, 'owner_id', r.owner_id, 'service', r.service, 'name', r.name,
    'value', emit_service_attribute_changed.value, 'prev_value', emit_service_attribute_changed.prev_value));
  RETURN ev;
END
$$;

CREATE OR REPLACE FUNCTION espf.capture_service_attribute_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM espf.emit_service_attribute_changed(TG_ARGV[0], NEW, NEW.value, NULL);
  ELSIF TG_OP = 'DELETE' THEN
    PERFORM espf.emit_service_attribute_changed(TG_ARGV[0], OLD, NULL, OLD.value);
  ELSIF (OLD.owner_type, OLD.owner_id, OLD.service, OLD.name)
        IS DISTINCT FROM (NEW.owner_type, NEW.owner_id, NEW.service, NEW.name) THEN
    PERFORM espf.emit_service_attribute_changed(TG_ARGV[0], OLD, NULL, OLD.value);
    PERFORM espf.emit_service_attribute_changed(TG_ARGV[0], NEW, NEW.value, NULL);
  ELSE
    PERFORM espf.emit_service_attribute_changed(TG_ARGV[0], NEW, NEW.value, OLD.value);
  END IF;
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
