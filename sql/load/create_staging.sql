-- Staging tables of one snapshot load (pipelines/load.py). Temporary: private to the load's
-- connection, gone with it. Built with CREATE TABLE AS from the target tables so their column
-- types follow the migrations; `seq` is the document order (later rows win on duplicates),
-- BIGINT: the parallel load numbers a block's rows from `block << 24` (load_parallel.py).
-- {temp} is the temporary schema (pg_temp / temp) so a DROP can never hit a real table.
DROP TABLE IF EXISTS {temp}.stg_organisation;
DROP TABLE IF EXISTS {temp}.stg_formation;
DROP TABLE IF EXISTS {temp}.stg_action;
DROP TABLE IF EXISTS {temp}.stg_session;
DROP TABLE IF EXISTS {temp}.stg_slot;
DROP TABLE IF EXISTS {temp}.stg_formation_seen;
DROP TABLE IF EXISTS {temp}.stg_formation_last;
DROP TABLE IF EXISTS {temp}.stg_rejected_formation;
DROP TABLE IF EXISTS {temp}.stg_kept_formation;
DROP TABLE IF EXISTS {temp}.stg_kept_session;
CREATE TEMPORARY TABLE stg_organisation AS
SELECT CAST(0 AS BIGINT) AS seq, {organisation_columns} FROM organisation WHERE 1 = 0;
CREATE TEMPORARY TABLE stg_formation AS
SELECT CAST(0 AS BIGINT) AS seq, {formation_columns} FROM formation WHERE 1 = 0;
CREATE TEMPORARY TABLE stg_action AS
SELECT CAST(0 AS BIGINT) AS seq, {action_columns} FROM action WHERE 1 = 0;
CREATE TEMPORARY TABLE stg_session AS
SELECT CAST(0 AS BIGINT) AS seq, {session_columns} FROM kairos_session WHERE 1 = 0;
-- Slots arrive keyed by their session's natural key; kairos_session_id is resolved after the
-- session upsert (resolve_slot_sessions.sql).
CREATE TEMPORARY TABLE stg_slot AS
SELECT CAST(0 AS BIGINT) AS seq, CAST(0 AS BIGINT) AS session_seq,
       k.source, k.carif_session_numero, k.dispensateur_siret,
       {slot_columns}
FROM recruitment_slot, kairos_session AS k WHERE 1 = 0;
-- Every occurrence of a formation in the snapshot (pipelines/load_parallel.py
-- stage_record), in document order: its key (numero, derived key, or '' for a rejected
-- formation without numero), its digest (transforms/formation_digest.py; numbered read and
-- unchanged formations), state 0 = read and staged, 1 = unchanged (skipped: a previous load
-- saw the same bytes, its rows stay open), 2 = rejected (quarantined: its rows stay as last
-- loaded); seq: its place in document order (a read one's first staged row); organisations:
-- the JSON of its organisation rows (numbered read formations: a skipped one's are in
-- formation_digest); reason: a rejected one's first reason, `path: message (+n)`.
CREATE TEMPORARY TABLE stg_formation_seen (
    carif_formation_numero TEXT NOT NULL,
    digest BIGINT,
    state INTEGER NOT NULL,
    seq BIGINT NOT NULL,
    organisations TEXT,
    reason TEXT
);
