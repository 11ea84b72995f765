-- SQLite's form of refuse_delete_postgresql.sql (row trigger; SQLite has no TRUNCATE).
CREATE TRIGGER {table}_refuse_delete
BEFORE DELETE ON {table}
BEGIN
    SELECT RAISE(ABORT, '{table} rows are never deleted: ended rows are closed, and history and run ids refer to them');
END;
