-- espf provisions the example HSS (examples/hss/README.md, "Provision it with espf").
-- Run it once, as the espf owner or a member of espf_admin, in one transaction:
--   psql "$PGURL" -v ON_ERROR_STOP=1 -1 -f examples/hss/handler.sql
-- The rows are documented in docs/handlers.md ("Request steps") and docs/rules.md.
-- espf run needs ESPF_SECRET_HSS_KEY (the HSS's HSS_PROVISIONING_KEY) in its environment.
--
-- What the reference billing model gives the HSS, and what it does not:
-- * The HSS keys a subscriber by IMSI; only billing.sim_card has it. The built-in
--   types Account/Blocked, Account/Unblocked and Account/ID/Changed carry i_account
--   only, so part 1 adds the account's IMSI to them (a DBA's change of a built-in
--   rule: espf migrate keeps it and says so).
-- * The SIM's secret keys (ki, opc) are not in billing at all: no table or event has
--   them. They come from the SIM vendor's key file, which the operator loads into the
--   HSS's AuC (PUT /auc/) when the SIMs arrive. espf does not create or delete AuC
--   rows; it looks the AuC row up by IMSI and creates the subscriber with its auc_id.
-- * A SIM is linked to an account after the account exists (sim_card.i_account
--   references it), so Account/New never has an IMSI: the subscriber is created when
--   the SIM is assigned. Account/SIMCardAssignment mixes "gained" and "lost" in one
--   type, and a type's steps are one fixed list, so part 1 adds two types of our own,
--   SIMCard/Assigned and SIMCard/Released.
-- * The HSS takes an MSISDN of digits only: the steps drop a leading "+" of the
--   account's id.

SET client_min_messages = warning;  -- not the NOTICEs of the rule compiler

-- ── 1. Capture: what the HSS needs in the events ───────────────────────────────
UPDATE espf.event_rules SET variables =
  $v$jsonb_build_object('i_account', NEW.i_account, 'imsi', (SELECT s.imsi FROM billing.sim_card s WHERE s.i_account = NEW.i_account))$v$
 WHERE name IN ('Account/Blocked', 'Account/Unblocked');
UPDATE espf.event_rules SET variables =
  $v$jsonb_build_object('i_account', NEW.i_account, 'id', NEW.id, 'prev_id', OLD.id, 'imsi', (SELECT s.imsi FROM billing.sim_card s WHERE s.i_account = NEW.i_account))$v$
 WHERE name = 'Account/ID/Changed';

INSERT INTO espf.event_types (name, description) VALUES
  ('SIMCard/Assigned', 'a SIM card was given to an account (examples/hss/handler.sql): i_account, imsi, msisdn'),
  ('SIMCard/Released', 'a SIM card was taken from an account or deleted (examples/hss/handler.sql): i_account, imsi');

-- Each rule locks the account (i_env) so that i_event follows commit order per account.
INSERT INTO espf.event_rules (name, event_type, source, operations, watch, condition, variables, i_env) VALUES
  ('SIMCard/Assigned:insert', 'SIMCard/Assigned', 'billing.sim_card', '{INSERT}', NULL,
   'NEW.i_account IS NOT NULL',
   $v$jsonb_build_object('i_account', NEW.i_account, 'imsi', NEW.imsi, 'msisdn', (SELECT a.id FROM billing.account a WHERE a.i_account = NEW.i_account))$v$,
   'espf.lock_account(NEW.i_account)'),
  ('SIMCard/Assigned:update', 'SIMCard/Assigned', 'billing.sim_card', '{UPDATE}', '{i_account}',
   'NEW.i_account IS NOT NULL AND OLD.i_account IS DISTINCT FROM NEW.i_account',
   $v$jsonb_build_object('i_account', NEW.i_account, 'imsi', NEW.imsi, 'msisdn', (SELECT a.id FROM billing.account a WHERE a.i_account = NEW.i_account))$v$,
   'espf.lock_account(NEW.i_account)'),
  ('SIMCard/Released:update', 'SIMCard/Released', 'billing.sim_card', '{UPDATE}', '{i_account}',
   'OLD.i_account IS NOT NULL AND OLD.i_account IS DISTINCT FROM NEW.i_account',
   $v$jsonb_build_object('i_account', OLD.i_account, 'imsi', OLD.imsi)$v$,
   'espf.lock_account(OLD.i_account)'),
  ('SIMCard/Released:delete', 'SIMCard/Released', 'billing.sim_card', '{DELETE}', NULL,
   'OLD.i_account IS NOT NULL',
   $v$jsonb_build_object('i_account', OLD.i_account, 'imsi', OLD.imsi)$v$,
   'espf.lock_account(OLD.i_account)');

-- ── 2. The handler ─────────────────────────────────────────────────────────────
-- The HSS's base URL (the one line to change for another HSS). 20 attempts, backoff
-- from 1 s to 60 s: a lookup that keeps answering `200 null` ends FAILED after ~15 min.
INSERT INTO espf.handlers (name, kind) VALUES ('HSS', 'http');
INSERT INTO espf.http_handlers (handler, url, max_attempts, retry_delay, retry_max_delay)
VALUES ('HSS', '{http://127.0.0.1:8081}', 20, 1, 60);

-- ── 3. The steps ───────────────────────────────────────────────────────────────
-- Success rules, decided here once:
-- * A lookup (GET) is done only when it finds the row: `200 null` (no such row) is a
--   failed attempt, RETRIED with backoff, not refused. Per-account order means the
--   subscriber was created before any later event of the account is sent, so `null`
--   is a state to mend in the HSS (or an AuC row not loaded yet), after which the
--   retry goes through; after 20 attempts the delivery is FAILED, visible in
--   espf status.
-- * PUT /subscriber/ answered `400 {"result":"Failed"}` because a subscriber with that
--   IMSI exists is RETRIED, not taken as done: the row may be another account's, whose
--   SIMCard/Released has not gone yet (a SIM moved between accounts: the two accounts'
--   events go in parallel), and taking it as done would leave this account out of the
--   HSS. Once the release deletes it, the retry creates ours. The other cause, the
--   answer to our own PUT lost (a timeout, a crash of espf run between the request and
--   its record), ends FAILED after 20 attempts, for an operator to look at. Any other
--   400 (a bad field, an unknown auc_id) is refused at once (FAILED, no retry): the
--   same body cannot succeed.
-- * A PATCH answered `200 null` (the row vanished since the lookup) is retried, from
--   the PATCH step.
-- * A DELETE is done on any 200, `200 null` (already gone) included.

-- A SIM given to an account: the AuC row of its IMSI, then the subscriber with that auc_id.
INSERT INTO espf.http_steps (handler, event_type, step, name, method, path, body, success_when, refuse_when) VALUES
  ('HSS', 'SIMCard/Assigned', 1, 'auc', 'GET', '/auc/imsi/{variables.imsi}', NULL,
   'status = 200 and body != null', NULL),
  ('HSS', 'SIMCard/Assigned', 2, 'sub', 'PUT', '/subscriber/',
   '{"imsi": variables.imsi, "msisdn": $replace(variables.msisdn, "+", ""), "auc_id": step.auc.body.auc_id}',
   'status = 200 and body != null',
   'status = 400 and $not($contains($string(body.reason), "subscriber with imsi " & variables.imsi & " exists"))');

-- Every other change starts with the same step 1: the subscriber of the IMSI. An
-- event without an IMSI (an account without a SIM, or an Account/Blocked made by the
-- customer dispatcher, whose events carry i_account only) has nothing in the HSS to
-- change: its lookup asks for "-" and the delivery is FAILED at once (refuse_when),
-- rather than retried for 20 attempts while the account's later events wait.
INSERT INTO espf.http_steps (handler, event_type, step, name, method, path, success_when, refuse_when)
SELECT 'HSS', t, 1, 'lookup', 'GET', '/subscriber/imsi/{$type(variables.imsi) = "string" ? variables.imsi : "-"}',
       'status = 200 and body != null', '$not($type(variables.imsi) = "string")'
  FROM unnest('{Account/ID/Changed,Account/Blocked,Account/Unblocked,SIMCard/Released}'::text[]) t;

-- Step 2 acts on the subscriber_id the lookup gave: the number changes (msisdn), the
-- account is blocked or unblocked (enabled), the SIM leaves the account (before the
-- account is deleted, or a SIM swap): the subscriber is deleted. The AuC row stays:
-- it holds the vendor's keys, which billing cannot give back when the SIM is
-- assigned again.
INSERT INTO espf.http_steps (handler, event_type, step, name, method, path, body, success_when, refuse_when) VALUES
  ('HSS', 'Account/ID/Changed', 2, 'patch', 'PATCH', '/subscriber/{step.lookup.body.subscriber_id}',
   '{"msisdn": $replace(variables.id, "+", "")}', 'status = 200 and body != null', 'status = 400'),
  ('HSS', 'Account/Blocked', 2, 'patch', 'PATCH', '/subscriber/{step.lookup.body.subscriber_id}',
   '{"enabled": false}', 'status = 200 and body != null', 'status = 400'),
  ('HSS', 'Account/Unblocked', 2, 'patch', 'PATCH', '/subscriber/{step.lookup.body.subscriber_id}',
   '{"enabled": true}', 'status = 200 and body != null', 'status = 400'),
  ('HSS', 'SIMCard/Released', 2, 'delete', 'DELETE', '/subscriber/{step.lookup.body.subscriber_id}',
   NULL, 'status = 200', NULL);

-- Every step sends the HSS's API key, which espf run reads from its environment.
UPDATE espf.http_steps SET headers = '{"Provisioning-Key": "env:ESPF_SECRET_HSS_KEY"}' WHERE handler = 'HSS';

-- ── 4. Subscribe, switch the types on, enable ──────────────────────────────────
INSERT INTO espf.subscriptions (handler, event_type)
SELECT 'HSS', t FROM unnest('{SIMCard/Assigned,SIMCard/Released,Account/ID/Changed,Account/Blocked,Account/Unblocked}'::text[]) t;
UPDATE espf.event_types SET enabled = true
 WHERE name IN ('SIMCard/Assigned', 'SIMCard/Released', 'Account/ID/Changed', 'Account/Blocked', 'Account/Unblocked');
UPDATE espf.handlers SET enabled = true WHERE name = 'HSS';
