-- The KAIROS sessions of a source as they were at the as_of parameter (a timestamp; a date means its
-- midnight): the version valid at that instant, unless that version is a closing.
-- Bind parameters: source, as_of.
-- The current version's content is the row itself (the snapshot placeholder = the live row k
-- as JSON, core/history.py); ended versions carry their own snapshot (migration 0007).
SELECT k.id AS kairos_session_id,
       k.carif_action_numero,
       k.carif_session_numero,
       k.dispensateur_siret,
       v.version_no,
       v.valid_from,
       v.valid_to,
       v.content_hash,
       CASE
           WHEN v.valid_to_run_id IS NULL THEN COALESCE(v.snapshot, {snapshot})
           ELSE v.snapshot
       END AS snapshot
FROM kairos_session_version AS v
JOIN kairos_session AS k ON k.id = v.kairos_session_id
WHERE k.source = :source
  AND v.valid_from <= :as_of
  AND (v.valid_to IS NULL OR v.valid_to > :as_of)
  AND v.change_kind <> 'close'
ORDER BY k.carif_session_numero, k.dispensateur_siret;
