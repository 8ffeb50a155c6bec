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
-- the trigger's WHEN clause (stored as a node tree in text form: every trigger
-- of the table, on every statement), parses it back, runs the planner's constant
-- folding over it (which inlines SQL functions by parsing their bodies) and
-- compiles it, on every execution of the statement, prepared or not. So the
-- WHEN clauses are kept short: a transition that needs more than a comparison
-- or two is one call of a PL/pgSQL predicate below (never inlined, so nothing
-- is parsed per statement), given the whole OLD and NEW rows. A PL/pgSQL
-- function compiles its expressions once per session but sets up the state of
-- each expression it runs once per transaction: in single-statement billing
-- transactions that is every call, so the predicates run as few and as small
-- expressions as they can on the common path (a funds predicate looks at one
-- row when funds stay above zero, at both only when they stay at or below it).
-- A captured row then
-- costs one PL/pgSQL call that computes i_event, builds the variables with
-- a single jsonb_build_object and inserts the outbox row. Measured per
-- statement: docs/rules.md, "What a rule costs a billing write".

-- Funds transitions (README, "Event catalogue": "funds disappear" / "funds
-- appear"): whether funds were > 0 in row a and are <= 0 in row b. The WHEN
-- clause of a "funds disappear" rule is espf.account_funds_lost(OLD, NEW), of a
-- "funds appear" rule espf.account_funds_lost(NEW, OLD). Same rule as
-- espf.account_funds: funds > 0 is `balance > 0` (debit) or `credit_limit -
-- balance > 0`, true when there is no credit limit (credit); an account whose
-- balance is its customer's (subordinate) has no funds of its own.
CREATE OR REPLACE FUNCTION espf.account_funds_lost(a billing.account, b billing.account)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
  -- funds > 0 in b: none lost
  IF b.billing_model = 'debit' THEN
    IF b.balance > 0 THEN RETURN false; END IF;
  ELSIF b.credit_limit - b.balance > 0 IS NOT FALSE THEN
    RETURN false;
  END IF;
  -- funds <= 0 in a: none to lose
  IF a.billing_model = 'debit' THEN
    IF a.balance <= 0 THEN RETURN false; END IF;
  ELSIF a.credit_limit - a.balance <= 0 THEN
    RETURN false;
  END IF;
  RETURN a.balance_control = 'individual' AND b.balance_control = 'individual';
END
$$;

-- The same for a customer (espf.customer_funds: no credit limit is unlimited).
CREATE OR REPLACE FUNCTION espf.customer_funds_lost(a billing.customer, b billing.customer)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
  IF b.credit_limit - b.balance > 0 IS NOT FALSE THEN RETURN false; END IF;
  RETURN a.credit_limit - a.balance > 0 IS NOT FALSE;
END
$$;

-- The WHEN clauses of the built-in funds rules before espf.account_funds_lost,
-- kept for rules a DBA changed while they called them.
CREATE OR REPLACE FUNCTION espf.account_funds_disappear(o billing.account, n billing.account)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$ BEGIN RETURN espf.account_funds_lost(o, n); END $$;
CREATE OR REPLACE FUNCTION espf.account_funds_appear(o billing.account, n billing.account)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$ BEGIN RETURN espf.account_funds_lost(n, o); END $$;
CREATE OR REPLACE FUNCTION espf.customer_funds_disappear(o billing.customer, n billing.customer)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$ BEGIN RETURN espf.customer_funds_lost(o, n); END $$;
CREATE OR REPLACE FUNCTION espf.customer_funds_appear(o billing.customer, n billing.customer)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$ BEGIN RETURN espf.customer_funds_lost(n, o); END $$;

-- Whether a column a receiver provisions from changed (Subscriber/Updated,
-- Customer/Updated: never balance, which changes on every charge). As a WHEN
-- clause, the comparison of 13 columns is a node tree of 6 kB that every
-- statement on billing.account copied, and every statement touching one of the
-- columns parsed, folded and compiled; called here it is compiled once per session.
CREATE OR REPLACE FUNCTION espf.account_provisioning_changed(o billing.account, n billing.account)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
  RETURN (o.id, o.i_customer, o.i_product, o.i_env, o.role, o.billing_model, o.balance_control, o.credit_limit,
          o.blocked, o.password, o.service_password, o.activation_date, o.expiration_date)
         IS DISTINCT FROM
         (n.id, n.i_customer, n.i_product, n.i_env, n.role, n.billing_model, n.balance_control, n.credit_limit,
          n.blocked, n.password, n.service_password, n.activation_date, n.expiration_date);
END
$$;

CREATE OR REPLACE FUNCTION espf.customer_provisioning_changed(o billing.customer, n billing.customer)
RETURNS boolean LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
  RETURN (o.name, o.i_env, o.credit_limit, o.blocked, o.bill_status)
         IS DISTINCT FROM (n.name, n.i_env, n.credit_limit, n.blocked, n.bill_status);
END
$$;
