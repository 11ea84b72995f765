-- Remember the digests (and organisation rows) of this snapshot's valid formations for the
-- source's next load (transforms/formation_digest.py): one per numero, the last occurrence's
-- (the copy whose rows the database holds; an earlier copy's bytes must not be taken for the
-- winner's next time). :replace_all = 1 for a full snapshot or when the stored basis
-- differs: every digest not re-seen as an unchanged last occurrence goes; a partial snapshot
-- replaces only those of the formations it carries. Digests of formations whose last
-- occurrence was skipped as unchanged stay as they are (so a 1 % change rewrites about 1 % of
-- this table). :basis names the loader code and source configuration that made them.
-- name: forgotten
DELETE FROM formation_digest
WHERE source = :source
  AND (:replace_all = 1
       OR carif_formation_numero IN (SELECT carif_formation_numero FROM stg_formation_seen))
  AND NOT EXISTS (
      SELECT 1 FROM stg_formation_seen AS s
      JOIN stg_formation_last AS l
        ON l.carif_formation_numero = s.carif_formation_numero AND l.seq = s.seq
      WHERE s.state = 1
        AND s.carif_formation_numero = formation_digest.carif_formation_numero
        AND s.digest = formation_digest.digest);
-- name: recorded
INSERT INTO formation_digest (source, carif_formation_numero, digest, organisations)
SELECT :source, s.carif_formation_numero, s.digest, s.organisations
FROM stg_formation_seen AS s
JOIN stg_formation_last AS l
  ON l.carif_formation_numero = s.carif_formation_numero AND l.seq = s.seq
WHERE s.state = 0 AND s.digest IS NOT NULL
ON CONFLICT DO NOTHING;
-- name: basis_cleared
DELETE FROM formation_digest_basis WHERE source = :source;
-- name: basis
INSERT INTO formation_digest_basis (source, basis, run_id) VALUES (:source, :basis, :run_id);
