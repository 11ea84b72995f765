-- Open rows of {table} in this source's scope that the full snapshot no longer contains:
-- closed (kept, with the run and time), never deleted. Rows of formations skipped as
-- unchanged (kept_rows.sql) are in the snapshot: they stay open. {kept} is a constant-false
-- subquery when no formation was skipped.
UPDATE {table}
SET closed_at = :now, closed_run_id = :run_id
WHERE {scope} AND {table}.closed_at IS NULL
  AND NOT EXISTS (SELECT 1 FROM {staging} AS s WHERE {match})
  AND NOT EXISTS ({kept});
