-- Request steps (docs/handlers.md, "Request steps"): an http handler may speak
-- its receiver's own API, an ordered list of requests per event type instead of
-- the one EventSender POST.
--
-- 1. espf.http_steps: the steps, one row per (handler, event_type, step); the
--    row '*' is the default of the types without rows of their own. Checked by
--    espf.check_http_step (sql/035_request_steps.sql).
-- 2. espf.event_deliveries.steps_done, step_answers: how far the steps of a
--    delivery went, and the answers of the finished ones (a retry, or a restart
--    after a crash, resumes at the first step not done, with those answers).
--    Both are added without a rewrite (a constant default, a null column).
-- 3. The state SKIPPED: a handler with steps has none for the event's type.

SET LOCAL lock_timeout = '5s';

ALTER TABLE espf.event_deliveries
  ADD COLUMN steps_done int NOT NULL DEFAULT 0,
  ADD COLUMN step_answers jsonb;

-- Widened NOT VALID (no scan under the lock); the rows already there hold
-- states of the narrower list.
ALTER TABLE espf.event_deliveries DROP CONSTRAINT event_deliveries_state_check,
  ADD CONSTRAINT event_deliveries_state_check
    CHECK (state IN ('PENDING', 'RETRY', 'DELIVERED', 'FAILED', 'DISPATCHED', 'SUPERSEDED', 'SKIPPED')) NOT VALID;

CREATE TABLE espf.http_steps (
  handler      text NOT NULL REFERENCES espf.http_handlers (handler) ON DELETE CASCADE ON UPDATE CASCADE,
  event_type   text NOT NULL,          -- an espf event type, or '*': every type without rows of its own
  step         int NOT NULL,           -- the order of the steps of one (handler, event_type)
  name         text,                   -- optional: the answer is also step.<name> in later expressions
  method       text NOT NULL DEFAULT 'POST',
  path         text NOT NULL DEFAULT '',  -- below the handler's URL; {expression} parts are filled in, URL-encoded
  headers      jsonb NOT NULL DEFAULT '{}',  -- {"Header-Name": "<expression>"}
  body         text,                   -- an expression; null: no body
  content_type text NOT NULL DEFAULT 'application/json',
  success_when text,                   -- an expression over the answer: true when the step succeeded; null: any 2xx
  refuse_when  text,                   -- true: failed for good at once, no retry; null: never
  exists_when  text,                   -- true: counted as done ("already exists"); null: never
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (handler, event_type, step)
);
