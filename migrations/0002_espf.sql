-- The espf framework schema (docs/dba.md, Schema espf): event types, handlers,
-- subscriptions, http handler settings, the outbox and the result tables.
CREATE SCHEMA IF NOT EXISTS espf;

-- One row per event type; `enabled` switches capture on and off (docs/dba.md, espf.event_types).
CREATE TABLE espf.event_types (
  name        text PRIMARY KEY,
  enabled     boolean NOT NULL DEFAULT false,
  description text,
  origin      text NOT NULL DEFAULT 'trigger'
    CONSTRAINT event_types_origin_check CHECK (origin IN ('trigger', 'dispatcher'))
);

-- Handlers (docs/dba.md, espf.handlers). Several `espf run` instances split the handlers between them.
CREATE TABLE espf.handlers (
  name     text PRIMARY KEY,
  kind     text NOT NULL,
  enabled  boolean NOT NULL DEFAULT false,
  instance text NOT NULL DEFAULT 'main'
);

-- What each dispatcher consumes, and the view that maps a consumed event to the events it produces (docs/dba.md, Dispatcher views).
CREATE TABLE espf.dispatcher_rules (
  handler    text NOT NULL REFERENCES espf.handlers ON UPDATE CASCADE ON DELETE CASCADE,
  event_type text NOT NULL REFERENCES espf.event_types ON UPDATE CASCADE,
  view_name  text NOT NULL,
  PRIMARY KEY (handler, event_type)
);

CREATE TABLE espf.subscriptions (
  handler    text NOT NULL REFERENCES espf.handlers ON UPDATE CASCADE ON DELETE CASCADE,
  event_type text NOT NULL REFERENCES espf.event_types ON UPDATE CASCADE ON DELETE CASCADE,
  PRIMARY KEY (handler, event_type)
);

-- One row per http handler (the EventSender options of the seed; docs/dba.md, espf.http_handlers).
CREATE TABLE espf.http_handlers (
  handler                 text PRIMARY KEY REFERENCES espf.handlers ON UPDATE CASCADE ON DELETE CASCADE,
  url                     text[] NOT NULL DEFAULT '{}',
  async_mode              boolean NOT NULL DEFAULT true,
  auth_header             text NOT NULL DEFAULT 'Authorization',
  auth_method             text NOT NULL DEFAULT 'None',
  basic_auth_user         text,
  basic_auth_key          text,
  custom_auth_type        text,
  custom_auth_credentials text,
  signature_auth_key_id   text,
  signature_auth_key      text,
  max_wait_time           int NOT NULL DEFAULT 600,
  request_timeout         int NOT NULL DEFAULT 300,
  token_rate              numeric NOT NULL DEFAULT 10,
  token_burstiness        int NOT NULL DEFAULT 100,
  max_attempts            int NOT NULL DEFAULT 100,
  retry_delay             numeric NOT NULL DEFAULT 1,
  retry_max_delay         numeric NOT NULL DEFAULT 600,
  ca_file                 text
);

-- The outbox (docs/dba.md, espf.events). `variables` is exactly the object the HTTP body carries.
CREATE SEQUENCE espf.events_i_event_seq;
CREATE TABLE espf.events (
  i_event        bigint PRIMARY KEY DEFAULT nextval('espf.events_i_event_seq'),
  event_type     text NOT NULL,
  variables      jsonb NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  source_i_event bigint          -- set on events produced by a dispatcher
);
ALTER SEQUENCE espf.events_i_event_seq OWNED BY espf.events.i_event;
CREATE INDEX events_created_at_idx ON espf.events (created_at);

-- Logical replication carries new outbox rows to `espf run`.
CREATE PUBLICATION espf_events FOR TABLE espf.events WITH (publish = 'insert');

-- One row per (event, handler): the delivery state of the event for that handler (docs/dba.md, espf.event_deliveries).
--   PENDING    recorded, waiting its turn (behind an earlier event of the same account)
--   RETRY      an attempt failed; next attempt at next_attempt_at
--   DELIVERED  every URL answered 2xx
--   FAILED     max_attempts reached
--   DISPATCHED a dispatcher inserted the events it produces
CREATE TABLE espf.event_deliveries (
  i_event          bigint NOT NULL,
  handler          text NOT NULL,
  state            text NOT NULL
    CONSTRAINT event_deliveries_state_check CHECK (state IN ('PENDING', 'RETRY', 'DELIVERED', 'FAILED', 'DISPATCHED')),
  event_type       text NOT NULL,
  order_key        text NOT NULL,          -- events of one key reach the handler in order ('a:<i_account>', 'c:<i_customer>', …)
  i_account        bigint,
  instance         text NOT NULL,
  commit_lsn       pg_lsn,                 -- commit position of the source transaction: the order of the stream
  attempts         int NOT NULL DEFAULT 0,
  urls_done        int NOT NULL DEFAULT 0, -- URLs of the handler that already answered 2xx
  last_http_status int,
  last_error       text,
  next_attempt_at  timestamptz,
  committed_at     timestamptz,            -- when the source transaction committed
  created_at       timestamptz NOT NULL DEFAULT now(),
  first_attempt_at timestamptz,
  last_attempt_at  timestamptz,
  finished_at      timestamptz,
  PRIMARY KEY (i_event, handler)
);
CREATE INDEX event_deliveries_waiting_idx ON espf.event_deliveries (handler, commit_lsn, i_event)
  WHERE state IN ('PENDING', 'RETRY');
CREATE INDEX event_deliveries_finished_at_idx ON espf.event_deliveries (finished_at);

-- The billing system's Account_Provisioning_Statuses (docs/dba.md, espf.account_provisioning_statuses).
CREATE TABLE espf.account_provisioning_statuses (
  i_account  bigint NOT NULL,
  handler    text NOT NULL,
  status     text NOT NULL
    CONSTRAINT account_provisioning_statuses_status_check CHECK (status IN ('OK', 'IN_PROGRESS', 'RETRY', 'FAILED')),
  i_event    bigint,
  event_type text,
  attempts   int NOT NULL DEFAULT 0,
  message    text,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (i_account, handler)
);

-- Built-in event types (all disabled: a disabled type is not captured).
INSERT INTO espf.event_types (name, origin, description) VALUES
  ('Account/New',                      'trigger',    'an account was inserted'),
  ('Account/ID/Changed',               'trigger',    'account.id changed'),
  ('Account/Password/Changed',         'trigger',    'account.password changed'),
  ('Account/ServicePassword/Changed',  'trigger',    'account.service_password changed'),
  ('Account/Product/Changed',          'trigger',    'account.i_product changed'),
  ('Account/SIMCardAssignment',        'trigger',    'a SIM card was assigned to, removed from or moved between accounts'),
  ('Account/Blocked',                  'trigger',    'account.blocked false -> true, or its customer was blocked'),
  ('Account/Unblocked',                'trigger',    'account.blocked true -> false, or its customer was unblocked'),
  ('Account/ZeroAvailableFunds',       'trigger',    'the account''s available funds went from > 0 to <= 0'),
  ('Account/AvailableFundsAppear',     'trigger',    'the account''s available funds went from <= 0 to > 0'),
  ('Account/Status/Suspend',           'dispatcher', 'the account''s customer was suspended'),
  ('Account/Status/Unsuspend',         'dispatcher', 'the account''s customer was unsuspended'),
  ('Account/ServiceAttribute/Changed', 'dispatcher', 'a service attribute of the account, its customer or its product changed'),
  ('Customer/New',                     'trigger',    'a customer was inserted'),
  ('Customer/Blocked',                 'trigger',    'customer.blocked false -> true'),
  ('Customer/Unblocked',               'trigger',    'customer.blocked true -> false'),
  ('Customer/ZeroAvailableFunds',      'trigger',    'the customer''s available funds went from > 0 to <= 0'),
  ('Customer/AvailableFundsAppear',    'trigger',    'the customer''s available funds went from <= 0 to > 0'),
  ('Customer/Status/Suspend',          'trigger',    'customer.bill_status -> suspended'),
  ('Customer/Status/Unsuspend',        'trigger',    'customer.bill_status suspended -> open'),
  ('Customer/ServiceAttribute/Changed','dispatcher', 'a service attribute of the customer changed'),
  ('Product/ServiceAttribute/Changed', 'dispatcher', 'a service attribute of the product changed'),
  ('ServiceAttribute/Changed',         'trigger',    'a service_attribute_value row was inserted, updated or deleted');

INSERT INTO espf.handlers (name, kind) VALUES
  ('EventSender', 'http'),
  ('CustomerToAccountsDispatcher', 'dispatcher'),
  ('ProductToAccountsDispatcher', 'dispatcher'),
  ('ServiceAttributeDispatcher', 'dispatcher');

INSERT INTO espf.http_handlers (handler) VALUES ('EventSender');

INSERT INTO espf.dispatcher_rules (handler, event_type, view_name) VALUES
  ('CustomerToAccountsDispatcher', 'Customer/Blocked',                  'customer_to_accounts'),
  ('CustomerToAccountsDispatcher', 'Customer/Unblocked',                'customer_to_accounts'),
  ('CustomerToAccountsDispatcher', 'Customer/ZeroAvailableFunds',       'customer_to_accounts'),
  ('CustomerToAccountsDispatcher', 'Customer/AvailableFundsAppear',     'customer_to_accounts'),
  ('CustomerToAccountsDispatcher', 'Customer/Status/Suspend',           'customer_to_accounts'),
  ('CustomerToAccountsDispatcher', 'Customer/Status/Unsuspend',         'customer_to_accounts'),
  ('CustomerToAccountsDispatcher', 'Customer/ServiceAttribute/Changed', 'customer_to_accounts'),
  ('ProductToAccountsDispatcher',  'Product/ServiceAttribute/Changed',  'product_to_accounts'),
  ('ServiceAttributeDispatcher',   'ServiceAttribute/Changed',          'service_attribute_to_owner');
