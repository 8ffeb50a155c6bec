-- espf migrate runs every file of sql/ in one transaction. A statement that
-- needs a lock a billing write holds gives up after lock_timeout (espf migrate
-- tries again) instead of queueing the billing writes that come after it.
SET LOCAL lock_timeout = '2s';

-- Helpers shared by the capture rules and the dispatchers.

-- Available funds (README, "Event catalogue"). 'Infinity' stands for unlimited.
CREATE OR REPLACE FUNCTION espf.account_funds(billing_model text, balance numeric, credit_limit numeric)
RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN billing_model = 'debit' THEN balance
              ELSE coalesce(credit_limit - balance, 'Infinity') END
$$;

CREATE OR REPLACE FUNCTION espf.customer_funds(balance numeric, credit_limit numeric)
RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(credit_limit - balance, 'Infinity')
$$;

-- `event_time` as every event carries it: UTC, 'YYYY-MM-DD HH:MM:SS'.
CREATE OR REPLACE FUNCTION espf.event_time()
RETURNS text LANGUAGE sql VOLATILE AS $$
  SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
$$;

-- An event of an account or customer takes its i_event while holding the row
-- lock of that account or customer until commit, so that for any one account or
-- customer i_event increases in commit order. UPDATEs of the row hold that lock
-- already; capture rules on other tables (sim_card, service_attribute_value)
-- take it with these, in their `i_env` expression, which a generated rule
-- evaluates before it takes the i_event. They return the row's i_env (null when
-- there is no such row).
CREATE OR REPLACE FUNCTION espf.lock_account(id bigint) RETURNS int LANGUAGE sql AS $$
  SELECT a.i_env FROM billing.account a WHERE a.i_account = lock_account.id FOR NO KEY UPDATE
$$;

CREATE OR REPLACE FUNCTION espf.lock_customer(id bigint) RETURNS int LANGUAGE sql AS $$
  SELECT c.i_env FROM billing.customer c WHERE c.i_customer = lock_customer.id FOR NO KEY UPDATE
$$;

-- The i_env of a service attribute's owner (1 when there is none), its row
-- locked when it is an account or a customer.
CREATE OR REPLACE FUNCTION espf.owner_env(owner_type text, owner_id bigint) RETURNS int LANGUAGE sql AS $$
  SELECT coalesce(CASE owner_type
    WHEN 'account'  THEN espf.lock_account(owner_id)
    WHEN 'customer' THEN espf.lock_customer(owner_id)
    WHEN 'product'  THEN (SELECT p.i_env FROM billing.product p WHERE p.i_product = owner_id)
  END, 1)
$$;

-- Writes one event into the outbox. `vars` holds the type's own variables;
-- emit adds the common ones (i_event, i_env, event_time). The capture triggers
-- generated from espf.event_rules (sql/025_event_rules.sql) do not call it: each
-- writes its outbox row itself, so that a captured row costs one PL/pgSQL call,
-- not two or three (see "Cost of capture" below).
CREATE OR REPLACE FUNCTION espf.emit(event_type text, i_env int, vars jsonb)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  id bigint := nextval('espf.events_i_event_seq');
BEGIN
  INSERT INTO espf.events (i_event, event_type, variables)
  VALUES (id, event_type,
          vars || jsonb_build_object('i_event', id, 'i_env', i_env, 'event_time', espf.event_time()));
  RETURN id;
END
$$;

-- Cost of capture. A billing write pays, per statement, for every enabled
-- capture trigger of its table whose column list it touches: PostgreSQL copies
-- the trigger's WHEN clause (stored as a node tree in text form), parses it back,
-- runs the planner's constant folding over it (which inlines SQL functions by
-- parsing their bodies) and compiles it, on every execution of the statement,
-- prepared or not. So the WHEN clauses are kept short: a transition that needs
-- more than a comparison or two is one call of a PL/pgSQL predicate below
-- (never inlined, so nothing is parsed per statement), given the whole OLD and
-- NEW rows. A captured row then costs one PL/pgSQL call that computes
-- i_event, builds the variables with a single jsonb_build_object and inserts
-- the outbox row.

-- Funds transitions of an individual account (README, "Event catalogue": "funds disappear" /
-- "funds appear"): the WHEN clauses of Account/ZeroAvailableFunds and
-- Account/AvailableFundsAppear. Same rule as espf.account_funds.
CREATE OR REPLACE FUNCTION espf.account_funds_disappear(o billing.account, n billing.account)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
  RETURN o.balance_control = 'individual' AND n.balance_control = 'individual'
     AND espf.account_funds(o.billing_model, o.balance, o.credit_limit) > 0
     AND espf.account_funds(n.billing_model, n.balance, n.credit_limit) <= 0;
END
$$;

CREATE OR REPLACE FUNCTION espf.account_funds_appear(o billing.account, n billing.account)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
  RETURN o.balance_control = 'individual' AND n.balance_control = 'individual'
     AND espf.account_funds(o.billing_model, o.balance, o.credit_limit) <= 0
     AND espf.account_funds(n.billing_model, n.balance, n.credit_limit) > 0;
END
$$;

-- The same for a customer: Customer/ZeroAvailableFunds, Customer/AvailableFundsAppear.
CREATE OR REPLACE FUNCTION espf.customer_funds_disappear(o billing.customer, n billing.customer)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
  RETURN espf.customer_funds(o.balance, o.credit_limit) > 0
     AND espf.customer_funds(n.balance, n.credit_limit) <= 0;
END
$$;

CREATE OR REPLACE FUNCTION espf.customer_funds_appear(o billing.customer, n billing.customer)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
  RETURN espf.customer_funds(o.balance, o.credit_limit) <= 0
     AND espf.customer_funds(n.balance, n.credit_limit) > 0;
END
$$;
