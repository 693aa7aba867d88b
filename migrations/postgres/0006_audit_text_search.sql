-- Words in audit summaries, found through a trigram index instead of a scan of the whole log.
-- pg_trgm ships with Postgres and is a trusted extension (no superuser needed since 13).
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX audit_events_summary_trgm ON audit_events USING gin (LOWER(summary) gin_trgm_ops);
