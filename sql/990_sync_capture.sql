-- Every capture trigger in the state espf.event_types asks for (compiling a rule
-- already does this; this puts right anything changed by hand). It changes only
-- triggers whose state differs, so it locks no table when all is well.
SELECT espf.sync_capture();
-- Rule functions compiled by an earlier release are rewritten as this release's
-- compiler writes them (no table lock: sql/025_event_rules.sql).
SELECT espf.refresh_rule_functions();
