-- Configuration changes travel in the replication stream, at their commit
-- position (docs/replication.md, "How configuration changes reach espf run").
--
-- espf.config_version: one row, the version of the configuration. Every
-- transaction that changes a configuration row adds one to it as it commits
-- (espf.note_config_change, sql/042_config_stream.sql): the row lock orders
-- those commits, so versions grow in commit order, and espf run reads the
-- version with the rows it starts from. A new table rewrites nothing.
SET LOCAL lock_timeout = '5s';

CREATE TABLE espf.config_version (
  one     boolean PRIMARY KEY DEFAULT true CONSTRAINT config_version_one_row CHECK (one),
  version bigint NOT NULL DEFAULT 0
);
INSERT INTO espf.config_version DEFAULT VALUES;
