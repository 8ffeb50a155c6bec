-- The matrix (docs/cli.md, espf matrix): a row per (event type, handler).
--   '+' subscribed   '.' can subscribe   ' ' cannot
CREATE OR REPLACE VIEW espf.matrix AS
SELECT t.name AS event_type,
       h.name AS handler,
       CASE WHEN s.handler IS NOT NULL THEN '+'
            WHEN h.kind = 'http' OR r.handler IS NOT NULL THEN '.'
            ELSE ' ' END AS state
  FROM espf.event_types t
 CROSS JOIN espf.handlers h
  LEFT JOIN espf.subscriptions s ON s.handler = h.name AND s.event_type = t.name
  LEFT JOIN espf.dispatcher_rules r ON r.handler = h.name AND r.event_type = t.name;
