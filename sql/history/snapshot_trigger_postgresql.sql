-- Keep the content of the version a write ends (migration 0007; docs/data-model.md,
-- "History"). The current version of a row has no snapshot of its own: the row itself is
-- that content. Before any UPDATE of {table} changes a row, its current version must take
-- the row's content as it was: this statement-level trigger copies it from the transition
-- table of old rows, set-based (one statement per UPDATE, not one per row), into the
-- current versions that have no snapshot yet. Every writer is covered: the loader, the
-- KAIROS exports, a hand-written correction.
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE {version_table} AS v
    SET snapshot = ({snapshot})
    FROM old_rows AS t
    WHERE v.{fk} = t.id
      AND v.valid_to_run_id IS NULL
      AND v.snapshot IS NULL;
    RETURN NULL;
END
$$;
CREATE TRIGGER {trigger}
AFTER UPDATE ON {table}
REFERENCING OLD TABLE AS old_rows
FOR EACH STATEMENT EXECUTE FUNCTION {function}();
