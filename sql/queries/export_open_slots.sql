-- The open recruitment slots of open sessions, in session id order (merged with
-- export_sessions.sql while streaming).
SELECT r.kairos_session_id,
       r.origin,
       r.slot_key,
       r.modality,
       r.modality_code,
       r.starts_on,
       r.ends_on,
       r.start_time,
       r.end_time,
       r.capacity,
       r.postal_code,
       r.city,
       r.remote
FROM recruitment_slot AS r
JOIN kairos_session AS k ON k.id = r.kairos_session_id
WHERE r.closed_at IS NULL AND k.closed_at IS NULL
ORDER BY r.kairos_session_id, r.origin, r.starts_on, r.slot_key;
