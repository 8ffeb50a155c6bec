-- make bench, console_ms (bench/console.ts): the events i_event lo .. hi of a
-- history of `total` over the last 7 days, to the seed's accounts acc_lo .. acc_hi
-- (spread evenly), five event types (failures of every type), and their deliveries to EventSender: 1 in
-- 100 FAILED after 100 attempts, the rest DELIVERED. The numbers are settings
-- espf_bench.lo, .hi, .acc_lo, .acc_hi, .total of the session.
INSERT INTO espf.events (i_event, event_type, variables, created_at)
SELECT x.g, x.event_type, jsonb_build_object('i_event', x.g, 'i_env', 1, 'i_account', x.acc, 'event_time', to_char(x.t, 'YYYY-MM-DD HH24:MI:SS')), x.t
  FROM (SELECT g,
               (ARRAY['Account/New', 'Account/Blocked', 'Account/Unblocked', 'Account/ID/Changed', 'Account/Product/Changed'])[1 + (g / 7) % 5] AS event_type,
               current_setting('espf_bench.acc_lo')::bigint + (g * 7919) % (current_setting('espf_bench.acc_hi')::bigint - current_setting('espf_bench.acc_lo')::bigint + 1) AS acc,
               now() - interval '7 days' + g * (interval '7 days' / current_setting('espf_bench.total')::bigint) AS t
          FROM generate_series(current_setting('espf_bench.lo')::bigint, current_setting('espf_bench.hi')::bigint) g) x;

INSERT INTO espf.event_deliveries (i_event, handler, state, event_type, order_key, i_account, instance, attempts,
                                   last_http_status, last_error, committed_at, created_at, first_attempt_at, last_attempt_at, finished_at)
SELECT e.i_event, 'EventSender',
       CASE WHEN e.i_event % 100 = 7 THEN 'FAILED' ELSE 'DELIVERED' END,
       e.event_type, 'a:' || (e.variables->>'i_account'), (e.variables->>'i_account')::bigint, 'main',
       CASE WHEN e.i_event % 100 = 7 THEN 100 ELSE 1 END,
       CASE WHEN e.i_event % 100 = 7 THEN 503 ELSE 200 END,
       CASE WHEN e.i_event % 100 = 7 THEN 'HTTP 503: {"error":"busy"}' END,
       e.created_at, e.created_at, e.created_at, e.created_at + interval '20 ms', e.created_at + interval '20 ms'
  FROM espf.events e
 WHERE e.i_event BETWEEN current_setting('espf_bench.lo')::bigint AND current_setting('espf_bench.hi')::bigint;
