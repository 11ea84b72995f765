-- A key staged twice (same CARIF numero in two places of one file) keeps its last occurrence
-- in document order, as a later CARIF entry supersedes an earlier one. Each statement's row
-- count is reported in counts_json.
--
-- Formations first: the last copy of a formation wins whole, whatever it is (read, skipped
-- as unchanged, or rejected): the rows staged from an earlier copy go, so that a session only
-- the earlier copy had is not kept, and so that the incremental path (which may skip the
-- last copy as unchanged) gives the database a full read gives. Every row of a copy has a
-- seq at or after that copy's own (stg_formation_seen.seq), and before the next copy's.
CREATE TEMPORARY TABLE stg_formation_last AS
SELECT carif_formation_numero, MAX(seq) AS seq, COUNT(*) AS copies
FROM stg_formation_seen
GROUP BY carif_formation_numero;
CREATE INDEX stg_formation_last_key ON stg_formation_last (carif_formation_numero, seq);
-- name: superseded_sessions
DELETE FROM stg_session WHERE EXISTS (
    SELECT 1 FROM stg_formation_last AS l
    WHERE l.carif_formation_numero = stg_session.carif_formation_numero
      AND l.copies > 1 AND stg_session.seq < l.seq);
-- name: superseded_actions
DELETE FROM stg_action WHERE EXISTS (
    SELECT 1 FROM stg_formation_last AS l
    WHERE l.carif_formation_numero = stg_action.carif_formation_numero
      AND l.copies > 1 AND stg_action.seq < l.seq);
-- name: superseded_formations
DELETE FROM stg_formation WHERE EXISTS (
    SELECT 1 FROM stg_formation_last AS l
    WHERE l.carif_formation_numero = stg_formation.carif_formation_numero
      AND l.copies > 1 AND stg_formation.seq < l.seq);
-- name: duplicate_sessions
-- The same session key twice within the remaining rows (two formations, or one copy).
DELETE FROM stg_session WHERE seq IN (
    SELECT seq FROM (
        SELECT seq, ROW_NUMBER() OVER (
            PARTITION BY carif_session_numero, dispensateur_siret ORDER BY seq DESC) AS rn
        FROM stg_session) AS d
    WHERE d.rn > 1);
-- name: orphan_slots
-- The slots of a dropped session occurrence go with it. (Skipped when no session was
-- dropped: every staged slot then has its session.)
DELETE FROM stg_slot WHERE NOT EXISTS (
    SELECT 1 FROM stg_session AS s WHERE s.seq = stg_slot.session_seq);
-- name: duplicate_slots
DELETE FROM stg_slot WHERE seq IN (
    SELECT seq FROM (
        SELECT seq, ROW_NUMBER() OVER (
            PARTITION BY carif_session_numero, dispensateur_siret, slot_key ORDER BY seq DESC) AS rn
        FROM stg_slot) AS d
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
