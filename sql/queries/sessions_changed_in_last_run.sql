-- What changed in the latest run that loaded the source (succeeded or noop): one line per
-- KAIROS session version that this run opened, with the state it replaced (NULL for inserts).
-- Bind parameter: source. For "changed since run R", filter on valid_from_run_id > R instead.
-- The current version's content is the row itself (the snapshot placeholder = the live row k
-- as JSON, core/history.py); ended versions carry their own snapshot (migration 0007).
WITH last_run AS (
    SELECT MAX(id) AS id FROM run_ledger
    WHERE run_kind = 'lheo' AND source = :source AND status IN ('succeeded', 'noop')
)
SELECT k.id AS kairos_session_id,
       k.carif_action_numero,
       k.carif_session_numero,
       k.dispensateur_siret,
       v.change_kind,
       v.version_no,
       v.valid_from,
       v.content_hash,
       CASE
           WHEN v.valid_to_run_id IS NULL THEN COALESCE(v.snapshot, {snapshot})
           ELSE v.snapshot
       END AS snapshot,
       p.snapshot AS previous_snapshot
FROM kairos_session_version AS v
JOIN last_run AS r ON v.valid_from_run_id = r.id
JOIN kairos_session AS k ON k.id = v.kairos_session_id
LEFT JOIN kairos_session_version AS p
       ON p.kairos_session_id = v.kairos_session_id AND p.version_no = v.version_no - 1
WHERE k.source = :source
ORDER BY k.carif_session_numero, k.dispensateur_siret;
