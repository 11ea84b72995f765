-- Status of every enrolment as of as_of (date): its latest event dated on or before
-- as_of (ties broken by the event order `seq`). Enrolments with no event yet at that
-- date are absent. Parameters: as_of (date).
SELECT e.id AS enrolment_id,
       e.carif_session_numero,
       e.dispensateur_siret,
       e.candidate,
       ev.status,
       ev.event_date AS status_date
FROM enrolment AS e
JOIN enrolment_event AS ev ON ev.enrolment_id = e.id
WHERE ev.seq = (
    SELECT MAX(last.seq)
    FROM enrolment_event AS last
    WHERE last.enrolment_id = e.id
      AND last.event_date = (
          SELECT MAX(d.event_date)
          FROM enrolment_event AS d
          WHERE d.enrolment_id = e.id AND d.event_date <= :as_of))
ORDER BY e.carif_session_numero, e.dispensateur_siret, e.candidate;
