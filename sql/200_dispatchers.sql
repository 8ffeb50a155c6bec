-- Dispatchers are views (README, "Dispatchers"). Each maps a source event of espf.events
-- (source_i_event) to the events it produces: event_type, i_env and variables
-- (without i_event and event_time, which espf.dispatch adds). Which view serves
-- which consumed type is in espf.dispatcher_rules. Change a rule with
-- CREATE OR REPLACE VIEW; the next dispatched event uses it.

-- The variables every event carries, which a produced event gets afresh.
CREATE OR REPLACE FUNCTION espf.own_variables(v jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT v - '{i_event,i_env,event_time,source_i_event}'::text[]
$$;

-- CustomerToAccountsDispatcher
--   Customer/Blocked, Customer/Unblocked     -> Account/Blocked, Account/Unblocked for every
--                                               account of the customer not blocked on its own
--   Customer/ZeroAvailableFunds, …FundsAppear -> the same for the customer's subordinate accounts
--   Customer/Status/Suspend, …/Unsuspend      -> Account/Status/… for every account of the customer
--   Customer/ServiceAttribute/Changed         -> Account/ServiceAttribute/Changed for every account
CREATE OR REPLACE VIEW espf.customer_to_accounts AS
SELECT e.i_event                                   AS source_i_event,
       'Account/' || substr(e.event_type, 10)      AS event_type,
       a.i_env                                     AS i_env,
       espf.own_variables(e.variables)
         || jsonb_build_object('i_account', a.i_account, 'i_customer', a.i_customer,
                               'source_i_event', e.i_event) AS variables
  FROM espf.events e
  JOIN billing.account a ON a.i_customer = (e.variables ->> 'i_customer')::bigint
 WHERE (e.event_type IN ('Customer/Blocked', 'Customer/Unblocked') AND NOT a.blocked)
    OR (e.event_type IN ('Customer/ZeroAvailableFunds', 'Customer/AvailableFundsAppear')
        AND a.balance_control = 'subordinate')
    OR e.event_type IN ('Customer/Status/Suspend', 'Customer/Status/Unsuspend',
                        'Customer/ServiceAttribute/Changed');

-- ProductToAccountsDispatcher
--   Product/ServiceAttribute/Changed -> Account/ServiceAttribute/Changed for every account on the product
CREATE OR REPLACE VIEW espf.product_to_accounts AS
SELECT e.i_event                                   AS source_i_event,
       'Account/ServiceAttribute/Changed'::text    AS event_type,
       a.i_env                                     AS i_env,
       espf.own_variables(e.variables)
         || jsonb_build_object('i_account', a.i_account, 'i_product', a.i_product,
                               'source_i_event', e.i_event) AS variables
  FROM espf.events e
  JOIN billing.account a ON a.i_product = (e.variables ->> 'i_product')::bigint
 WHERE e.event_type = 'Product/ServiceAttribute/Changed';

-- ServiceAttributeDispatcher
--   ServiceAttribute/Changed -> Account/, Customer/ or Product/ServiceAttribute/Changed
--                               for the owner (i_account, i_customer or i_product)
CREATE OR REPLACE VIEW espf.service_attribute_to_owner AS
SELECT e.i_event                                   AS source_i_event,
       initcap(e.variables ->> 'owner_type') || '/ServiceAttribute/Changed' AS event_type,
       (e.variables ->> 'i_env')::int              AS i_env,
       espf.own_variables(e.variables)
         || jsonb_build_object('i_' || (e.variables ->> 'owner_type'), (e.variables ->> 'owner_id')::bigint,
                               'source_i_event', e.i_event) AS variables
  FROM espf.events e
 WHERE e.event_type = 'ServiceAttribute/Changed';
