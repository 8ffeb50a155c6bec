-- Capture rule for billing.sim_card: Account/SIMCardAssignment.
-- One event per account that gained or lost a SIM card (a move gives two:
-- the account that lost it first), and one when the IMSI of an assigned card
-- changes. Variables: i_account, imsi (the account's SIM now, or null), prev_imsi.
-- The account's row is locked before its i_event is taken (espf.lock_account), so
-- events of one account get increasing i_events in commit order even though a
-- sim_card write does not otherwise lock the account.
CREATE OR REPLACE FUNCTION espf.capture_sim_card_assignment() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  lost   bigint := CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN OLD.i_account END;
  gained bigint := CASE WHEN TG_OP IN ('UPDATE', 'INSERT') THEN NEW.i_account END;
  env    int;
  ev     bigint;
BEGIN
  -- Each event: lock the account (its i_env), then take the i_event, then write the row.
  IF lost IS NOT NULL AND lost IS DISTINCT FROM gained THEN
    env := espf.lock_account(lost);
    ev := nextval('espf.events_i_event_seq');
    INSERT INTO espf.events (i_event, event_type, variables)
    VALUES (ev, TG_ARGV[0], jsonb_build_object(
      'i_event', ev, 'i_env', env, 'event_time', espf.event_time(),
      'i_account', lost, 'imsi', NULL, 'prev_imsi', OLD.imsi));
  END IF;
  IF gained IS NOT NULL THEN
    env := espf.lock_account(gained);
    ev := nextval('espf.events_i_event_seq');
    INSERT INTO espf.events (i_event, event_type, variables)
    VALUES (ev, TG_ARGV[0], jsonb_build_object(
      'i_event', ev, 'i_env', env, 'event_time', espf.event_time(),
      'i_account', gained, 'imsi', NEW.imsi,
      'prev_imsi', CASE WHEN lost = gained THEN OLD.imsi END));
  END IF;
  RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER espf_sim_card_assigned
  AFTER INSERT ON billing.sim_card FOR EACH ROW
  WHEN (NEW.i_account IS NOT NULL)
  EXECUTE FUNCTION espf.capture_sim_card_assignment('Account/SIMCardAssignment');

CREATE OR REPLACE TRIGGER espf_sim_card_reassigned
  AFTER UPDATE OF i_account, imsi ON billing.sim_card FOR EACH ROW
  WHEN (OLD.i_account IS DISTINCT FROM NEW.i_account
        OR (NEW.i_account IS NOT NULL AND OLD.imsi IS DISTINCT FROM NEW.imsi))
  EXECUTE FUNCTION espf.capture_sim_card_assignment('Account/SIMCardAssignment');

CREATE OR REPLACE TRIGGER espf_sim_card_removed
  AFTER DELETE ON billing.sim_card FOR EACH ROW
  WHEN (OLD.i_account IS NOT NULL)
  EXECUTE FUNCTION espf.capture_sim_card_assignment('Account/SIMCardAssignment');
