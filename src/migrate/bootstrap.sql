-- The record of applied migrations (espf migrate creates it before anything else).
CREATE SCHEMA IF NOT EXISTS espf;
CREATE TABLE IF NOT EXISTS espf.migrations (
  version    int PRIMARY KEY,
  name       text NOT NULL,
  checksum   text NOT NULL,          -- sql-sha256:<hex> of its lines but comment-only and blank ones (src/migrate/checksum.ts); a bare sha256 of the whole file from an earlier release
  applied_at timestamptz NOT NULL DEFAULT now()
);
