-- The record of applied migrations (espf migrate creates it before anything else).
CREATE SCHEMA IF NOT EXISTS espf;
CREATE TABLE IF NOT EXISTS espf.migrations (
  version    int PRIMARY KEY,
  name       text NOT NULL,
  checksum   text NOT NULL,          -- sha256 of the file as applied
  applied_at timestamptz NOT NULL DEFAULT now()
);
