-- The recruitment slots (both origins) of a source's sessions as they were at the as_of parameter.
-- Bind parameters: source, as_of.
-- The current version's content is the row itself (the snapshot placeholder = the live row r
-- as JSON, core/history.py); ended versions carry their own snapshot (migration 0007).
SELECT r.id AS recruitment_slot_id,
       r.kairos_session_id,
       r.origin,
       r.slot_key,
       v.version_no,
       v.valid_from,
       v.valid_to,
       CASE
           WHEN v.valid_to_run_id IS NULL THEN COALESCE(v.snapshot, {snapshot})
           ELSE v.snapshot
       END AS snapshot
FROM recruitment_slot_version AS v
JOIN recruitment_slot AS r ON r.id = v.recruitment_slot_id
JOIN kairos_session AS k ON k.id = r.kairos_session_id
WHERE k.source = :source
  AND v.valid_from <= :as_of
  AND (v.valid_to IS NULL OR v.valid_to > :as_of)
  AND v.change_kind <> 'close'
ORDER BY r.kairos_session_id, r.origin, r.slot_key;
