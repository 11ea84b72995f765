-- History convention (docs/data-model.md): a run that writes rows of {table} sets their
-- last_seen_run_id (insert, change, reopen) or closed_run_id (close) to its run id. This ends
-- the current version of each such row...
UPDATE {version_table}
SET valid_to_run_id = :run_id, valid_to = :at
WHERE valid_to_run_id IS NULL
  AND {fk} IN (
      SELECT id FROM {table} WHERE last_seen_run_id = :run_id OR closed_run_id = :run_id);
