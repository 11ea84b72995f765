-- Every current recruitment slot of the open sessions, with its state on :as_of, in session
-- id order (merged with export_sessions.sql while streaming). `open` is {open_slot}
-- (sql/fragments/open_slot.sql), the checks' own definition; the other states say why a
-- slot is not open.
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
       r.status,
       r.postal_code,
       r.city,
       r.remote,
       CASE
           WHEN {open_slot} THEN 'open'
           WHEN r.modality NOT IN ('ico', 'rdvi', 'candidature') THEN 'not_a_kairos_modality'
           WHEN r.status = 'cancelled' THEN 'cancelled'
           WHEN r.status = 'closed' THEN 'closed'
           WHEN r.capacity = 0 THEN 'no_places'
           WHEN r.modality = 'candidature' AND r.starts_on > :as_of THEN 'not_yet_open'
           ELSE 'past'
       END AS state
FROM recruitment_slot AS r
JOIN kairos_session AS k ON k.id = r.kairos_session_id
WHERE r.closed_at IS NULL AND k.closed_at IS NULL
ORDER BY r.kairos_session_id, r.origin, r.starts_on, r.slot_key;
