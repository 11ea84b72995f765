-- The sessions of a formation whose last occurrence in this snapshot was rejected
-- (quarantined, stg_rejected_formation): kept open as last loaded, and marked with the run
-- (and day) that first rejected the formation and the latest rejection's first reason, for
-- the checks (formation_quarantined) and the report. A mark is a write (last_seen_run_id):
-- the history records it as a new version; an unchanged mark is not written again.
-- name: sessions_marked_rejected
UPDATE kairos_session
SET formation_rejected_run_id = COALESCE(formation_rejected_run_id, :run_id),
    formation_rejected_on = COALESCE(formation_rejected_on, :today),
    formation_rejected_reason = (
        SELECT r.reason FROM stg_rejected_formation AS r
        WHERE r.carif_formation_numero = kairos_session.carif_formation_numero),
    last_seen_run_id = :run_id
WHERE source = :source AND closed_at IS NULL
  AND EXISTS (
      SELECT 1 FROM stg_rejected_formation AS r
      WHERE r.carif_formation_numero = kairos_session.carif_formation_numero
        AND (kairos_session.formation_rejected_run_id IS NULL
             OR COALESCE(kairos_session.formation_rejected_reason, '')
                <> COALESCE(r.reason, '')));
-- name: sessions_no_longer_rejected
-- The formation is valid again (read, or unchanged since a valid load): the mark goes.
UPDATE kairos_session
SET formation_rejected_run_id = NULL,
    formation_rejected_on = NULL,
    formation_rejected_reason = NULL,
    last_seen_run_id = :run_id
WHERE source = :source AND formation_rejected_run_id IS NOT NULL
  AND carif_formation_numero IN (
      SELECT s.carif_formation_numero
      FROM stg_formation_seen AS s
      JOIN stg_formation_last AS l
        ON l.carif_formation_numero = s.carif_formation_numero AND l.seq = s.seq
      WHERE s.state IN (0, 1));
