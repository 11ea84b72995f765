-- A key staged twice (same CARIF numero in two places of one file) keeps its last occurrence
-- in document order, as a later CARIF entry supersedes an earlier one. The slots of a dropped
-- session occurrence go with it. Each statement's row count is reported in counts_json.
-- name: duplicate_sessions
DELETE FROM stg_session WHERE seq IN (
    SELECT seq FROM (
        SELECT seq, ROW_NUMBER() OVER (
            PARTITION BY carif_session_numero, dispensateur_siret ORDER BY seq DESC) AS rn
        FROM stg_session) AS d
    WHERE d.rn > 1);
-- name: orphan_slots
-- (Skipped when duplicate_sessions deleted nothing: every staged slot then has its session.)
DELETE FROM stg_slot WHERE NOT EXISTS (
    SELECT 1 FROM stg_session AS s WHERE s.seq = stg_slot.session_seq);
-- name: duplicate_slots
DELETE FROM stg_slot WHERE seq IN (
    SELECT seq FROM (
        SELECT seq, ROW_NUMBER() OVER (
            PARTITION BY carif_session_numero, dispensateur_siret, slot_key ORDER BY seq DESC) AS rn
        FROM stg_slot) AS d
    WHERE d.rn > 1);
-- name: duplicate_formations
DELETE FROM stg_formation WHERE seq IN (
    SELECT seq FROM (
        SELECT seq, ROW_NUMBER() OVER (
            PARTITION BY carif_formation_numero ORDER BY seq DESC) AS rn
        FROM stg_formation) AS d
    WHERE d.rn > 1);
-- name: duplicate_actions
DELETE FROM stg_action WHERE seq IN (
    SELECT seq FROM (
        SELECT seq, ROW_NUMBER() OVER (
            PARTITION BY carif_action_numero ORDER BY seq DESC) AS rn
        FROM stg_action) AS d
    WHERE d.rn > 1);
-- name: duplicate_organisations
-- An organisation seen as responsable carries its N° DA: prefer that row, then the last one.
DELETE FROM stg_organisation WHERE seq IN (
    SELECT seq FROM (
        SELECT seq, ROW_NUMBER() OVER (
            PARTITION BY siret
            ORDER BY CASE WHEN numero_activite IS NULL THEN 0 ELSE 1 END DESC, seq DESC) AS rn
        FROM stg_organisation) AS d
    WHERE d.rn > 1);
