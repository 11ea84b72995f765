-- Keep the content of the version a write ends (migration 0007; docs/data-model.md,
-- "History"): SQLite's form of snapshot_trigger_postgresql.sql, row by row (SQLite has no
-- statement-level triggers). The column list is the table's when the trigger was created:
-- a migration that adds a column to {table} must install the triggers again
-- (core.history.install_snapshot_triggers; tests/test_history_snapshots.py checks).
CREATE TRIGGER {trigger}
AFTER UPDATE ON {table}
FOR EACH ROW
BEGIN
    UPDATE {version_table}
    SET snapshot = {snapshot}
    WHERE {fk} = OLD.id
      AND valid_to_run_id IS NULL
      AND snapshot IS NULL;
END;
