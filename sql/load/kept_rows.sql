-- What this snapshot keeps in place without staging it: the formations whose last
-- occurrence (dedupe_staging.sql) was skipped as unchanged (transforms/formation_digest.py)
-- or rejected (quarantined: "a KAIROS session never vanishes because its formation failed
-- validation"), and the ids of their open sessions. A rejected formation without numero
-- cannot be told from the others: every formation of the source without numero (derived key
-- `~…`, docs/data-model.md) is then kept. Materialised and indexed (and, on PostgreSQL,
-- analysed) so that the closings' "kept" tests are planned from real counts.
CREATE TEMPORARY TABLE stg_rejected_formation AS
SELECT s.carif_formation_numero, s.reason
FROM stg_formation_seen AS s
JOIN stg_formation_last AS l
  ON l.carif_formation_numero = s.carif_formation_numero AND l.seq = s.seq
WHERE s.state = 2 AND s.carif_formation_numero <> '';
CREATE TEMPORARY TABLE stg_kept_formation AS
SELECT s.carif_formation_numero
FROM stg_formation_seen AS s
JOIN stg_formation_last AS l
  ON l.carif_formation_numero = s.carif_formation_numero AND l.seq = s.seq
WHERE s.state IN (1, 2) AND s.carif_formation_numero <> ''
UNION
SELECT DISTINCT t.carif_formation_numero
FROM kairos_session AS t
WHERE t.source = :source AND t.closed_at IS NULL AND t.carif_formation_numero LIKE '~%'
  AND EXISTS (SELECT 1 FROM stg_formation_seen WHERE state = 2 AND carif_formation_numero = '');
CREATE INDEX stg_kept_formation_key ON stg_kept_formation (carif_formation_numero);
CREATE TEMPORARY TABLE stg_kept_session AS
SELECT t.id
FROM kairos_session AS t
JOIN stg_kept_formation AS k ON k.carif_formation_numero = t.carif_formation_numero
WHERE t.source = :source AND t.closed_at IS NULL;
CREATE INDEX stg_kept_session_id ON stg_kept_session (id);
