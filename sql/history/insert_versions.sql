-- ...and this opens the new one, with the row's hash. Its snapshot stays NULL while it is
-- the current version: the row itself holds that content, and the trigger of migration 0007
-- (sql/history/snapshot_trigger_*.sql) copies it into the version before a later write
-- changes the row. A first load writes each row once, not twice.
-- `previous` = the versions end_versions.sql just closed (valid_to_run_id = this run), i.e.
-- the latest version of every row written again; materialised once, because a lookup
-- correlated with the version table that this very statement fills would rescan its new
-- pages for every row on PostgreSQL.
WITH previous AS MATERIALIZED (
    SELECT v.{fk} AS entity_id, v.version_no, v.change_kind
    FROM {version_table} AS v
    WHERE v.valid_to_run_id = :run_id
)
INSERT INTO {version_table}
    ({fk}, version_no, change_kind, valid_from_run_id, valid_from, content_hash, snapshot)
SELECT t.id,
       COALESCE(p.version_no, 0) + 1,
       CASE
           WHEN t.closed_run_id = :run_id THEN 'close'
           WHEN t.first_seen_run_id = :run_id THEN 'insert'
           WHEN p.change_kind = 'close' THEN 'reopen'
           ELSE 'update'
       END,
       :run_id, :at, t.content_hash, NULL
FROM {table} AS t
LEFT JOIN previous AS p ON p.entity_id = t.id
WHERE t.last_seen_run_id = :run_id OR t.closed_run_id = :run_id;
