-- The open sessions this snapshot keeps because their formation's last occurrence was
-- rejected (mark_rejected_formations.sql), and the formations concerned.
SELECT COUNT(*) AS sessions, COUNT(DISTINCT carif_formation_numero) AS formations
FROM kairos_session
WHERE source = :source AND closed_at IS NULL
  AND carif_formation_numero IN (SELECT carif_formation_numero FROM stg_rejected_formation);
