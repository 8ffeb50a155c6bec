-- Re-creating the capture triggers above enabled them all: put every one back
-- in the state espf.event_types asks for.
SELECT espf.sync_capture();
