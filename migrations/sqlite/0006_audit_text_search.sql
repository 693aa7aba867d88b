-- Postgres indexes audit summaries by trigram here; the embedded SQLite log is small enough
-- to scan, so this migration only keeps the two engines' histories in step.
SELECT 1;
