-- SQLite's form of refuse_delete_postgresql.sql (row trigger; SQLite has no TRUNCATE). RAISE
-- takes a literal only, so the message names the three guarded tables.
CREATE TRIGGER {table}_refuse_delete
BEFORE DELETE ON {table}
BEGIN
    SELECT RAISE(ABORT, 'run_ledger, kairos_session and recruitment_slot rows are never deleted: ended rows are closed, and history and run ids refer to them');
END;
