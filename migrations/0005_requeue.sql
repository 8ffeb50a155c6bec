-- Deliveries put back in the queue while espf run is running (espf resend,
-- maintenance reclaim): the instance serving the handler picks up rows marked
-- `requeued` within its configuration poll (about a second) and clears the mark.
ALTER TABLE espf.event_deliveries ADD COLUMN requeued boolean NOT NULL DEFAULT false;
CREATE INDEX event_deliveries_requeued_idx ON espf.event_deliveries (handler) WHERE requeued;
