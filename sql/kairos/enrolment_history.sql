-- Every status change of the enrolments of a candidate (pseudonym), in order.
-- Parameters: candidate.
SELECT e.id AS enrolment_id,
       e.carif_session_numero,
       e.dispensateur_siret,
       ev.seq,
       ev.previous_status,
       ev.status,
       ev.event_date,
       ev.slot_key,
       ev.source_kind,
       ev.run_id
FROM enrolment AS e
JOIN enrolment_event AS ev ON ev.enrolment_id = e.id
WHERE e.candidate = :candidate
ORDER BY e.id, ev.seq;
