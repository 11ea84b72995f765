-- Open sessions of the source that belong to formations skipped as unchanged (kept_rows.sql)
-- and that no read formation staged again: in the snapshot, not rewritten (counted as
-- unchanged in the ledger; staged ones are counted from the staging).
SELECT COUNT(*)
FROM stg_kept_session AS k
JOIN kairos_session AS t ON t.id = k.id
WHERE NOT EXISTS (
    SELECT 1 FROM stg_session AS s
    WHERE s.carif_session_numero = t.carif_session_numero
      AND s.dispensateur_siret = t.dispensateur_siret);
