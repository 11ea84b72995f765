-- Open sessions of the source that belong to formations skipped as unchanged: in the
-- snapshot, not staged, not rewritten (counted as unchanged in the ledger).
SELECT COUNT(*)
FROM kairos_session AS t
WHERE t.source = :source AND t.closed_at IS NULL
  AND EXISTS (SELECT 1 FROM stg_formation_digest AS k
              WHERE k.unchanged = 1 AND k.carif_formation_numero = t.carif_formation_numero);
