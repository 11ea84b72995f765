-- Rows of {table} are never deleted (migration 0008; docs/data-model.md, "Integrity"): an
-- ended session or slot is closed, a run stays in the ledger, and the history and run-id
-- columns of the loaded tables refer to them without a foreign key. This statement-level
-- guard keeps the property those foreign keys gave (no reference left dangling by a delete)
-- at no cost to the bulk inserts. TRUNCATE is refused too.
CREATE OR REPLACE FUNCTION kairos_refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are never deleted: ended rows are closed, and history and run ids refer to them', TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER {table}_refuse_delete
BEFORE DELETE OR TRUNCATE ON {table}
FOR EACH STATEMENT EXECUTE FUNCTION kairos_refuse_delete();
