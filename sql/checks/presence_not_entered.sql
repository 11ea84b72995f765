-- presence_not_entered: an ICO or RDVI range ended more than 7 days before :as_of and
-- candidates positioned on it still have no presence or absence entered, so "le prescripteur
-- ne peut positionner sur une nouvelle date" ("pas de mise à jour de la présence sur une
-- info coll", Normandie deck "SMF et KAIROS"; KAIROS tab "Saisir les Présences/Absences", "Rappel : les obligations légales" deck).
-- Boundary: the slot's last day (COALESCE(ends_on, starts_on)) < :as_of_minus_7, i.e. 8 days
-- or more before :as_of; 7 days ago is not flagged yet.
-- An enrolment is on the slot when its current_slot_key is the slot's key within the session;
-- "no presence" = its current status is still 'positionne'.
-- One flag per slot; detail_count = candidates concerned (a count, never who).
-- Not restricted to current sessions: the OF's duty outlives the offer's visibility.
-- `{batch}` = kairos_session.
SELECT
    s.id AS kairos_session_id,
    s.source,
    s.carif_formation_numero,
    s.carif_action_numero,
    s.carif_session_numero,
    s.dispensateur_siret,
    s.mandataire_siret,
    s.place_departement AS departement,
    r.modality || ':' || r.slot_key AS detail_key,
    COUNT(DISTINCT e.id) AS detail_count,
    COALESCE(r.ends_on, r.starts_on) AS detail_date
FROM {batch} s
JOIN enrolment e ON e.kairos_session_id = s.id
JOIN recruitment_slot r
    ON r.kairos_session_id = s.id
   AND r.slot_key = e.current_slot_key
WHERE e.current_status = 'positionne'
  AND r.modality IN ('ico', 'rdvi')
  AND COALESCE(r.ends_on, r.starts_on) < :as_of_minus_7
GROUP BY
    s.id,
    s.source,
    s.carif_formation_numero,
    s.carif_action_numero,
    s.carif_session_numero,
    s.dispensateur_siret,
    s.mandataire_siret,
    s.place_departement,
    r.modality,
    r.slot_key,
    r.ends_on,
    r.starts_on
