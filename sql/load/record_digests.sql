-- Remember the digests (and organisation rows) of this snapshot's valid formations for the
-- source's next load (transforms/formation_digest.py). :replace_all = 1 for a full snapshot
-- or when the stored basis differs: every digest not re-seen unchanged goes; a partial
-- snapshot replaces only those of the formations it carries. Rows of formations skipped as
-- unchanged stay as they are (so a 1 % change rewrites about 1 % of this table).
-- :basis names the loader code and source configuration that made them.
-- name: forgotten
DELETE FROM formation_digest
WHERE source = :source
  AND (:replace_all = 1
       OR carif_formation_numero IN (SELECT carif_formation_numero FROM stg_formation_digest))
  AND NOT EXISTS (
      SELECT 1 FROM stg_formation_digest AS s
      WHERE s.unchanged = 1
        AND s.carif_formation_numero = formation_digest.carif_formation_numero
        AND s.digest = formation_digest.digest);
-- name: recorded
INSERT INTO formation_digest (source, carif_formation_numero, digest, organisations)
SELECT :source, carif_formation_numero, digest, MAX(organisations)
FROM stg_formation_digest
WHERE unchanged = 0
GROUP BY carif_formation_numero, digest
ON CONFLICT DO NOTHING;
-- name: basis_cleared
DELETE FROM formation_digest_basis WHERE source = :source;
-- name: basis
INSERT INTO formation_digest_basis (source, basis, run_id) VALUES (:source, :basis, :run_id);
