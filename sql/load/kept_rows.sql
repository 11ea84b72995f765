-- What the formations skipped as unchanged keep in place (transforms/formation_digest.py):
-- their numeros, and the ids of their open sessions. Materialised and indexed (and, on
-- PostgreSQL, analysed) so that the closings' "kept" tests are planned from real counts.
CREATE TEMPORARY TABLE stg_kept_formation AS
SELECT DISTINCT carif_formation_numero FROM stg_formation_digest WHERE unchanged = 1;
CREATE INDEX stg_kept_formation_key ON stg_kept_formation (carif_formation_numero);
CREATE TEMPORARY TABLE stg_kept_session AS
SELECT t.id
FROM kairos_session AS t
JOIN stg_kept_formation AS k ON k.carif_formation_numero = t.carif_formation_numero
WHERE t.source = :source AND t.closed_at IS NULL;
CREATE INDEX stg_kept_session_id ON stg_kept_session (id);
