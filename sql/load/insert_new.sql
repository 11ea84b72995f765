-- Staged rows of {table} whose natural key is not known yet. The unique key decides (ON
-- CONFLICT DO NOTHING): an anti-join against the table being filled would rescan its new
-- pages for every staged row on PostgreSQL. Staging is de-duplicated first, so the only
-- conflicts are rows that already exist, and those are skipped without being written.
-- `WHERE true` lets SQLite parse an upsert on INSERT … SELECT.
INSERT INTO {table} ({columns}, first_seen_run_id, last_seen_run_id)
SELECT {staged_columns}, :run_id, :run_id
FROM {staging} AS s
WHERE true
ON CONFLICT DO NOTHING;
