-- The latest KAIROS modalities export (succeeded or unchanged) and how many of its lines
-- named no KAIROS session we hold (kept in kairos_modality_unmatched): the report says so,
-- so that the CARIF-OREF and KAIROS sides can be reconciled.
SELECT l.id AS run_id,
       l.started_at,
       (SELECT COUNT(*) FROM kairos_modality_unmatched u WHERE u.run_id = l.id) AS unmatched
FROM run_ledger l
WHERE l.run_kind = 'modalities'
  AND l.status IN ('succeeded', 'noop')
ORDER BY l.id DESC
LIMIT 1
