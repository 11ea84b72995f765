-- entry_not_declared: the session started more than three days before :as_of and INSCRIT
-- candidates have neither an entry nor an absence at entry declared. Décret n° 2019-1386 du
-- 17 décembre 2019, art. 1: entry, interruption and exit are transmitted "dans les trois
-- jours" ("Rappel : les obligations légales" deck, with Code du travail L6121-5).
-- Boundary: debut < :as_of_minus_3: started 4 days ago is flagged, 3 days ago is not.
-- The start is the enrolment's planned start (training plan) when known, else the session's.
-- One flag per session; detail_count = candidates, detail_date = the start date.
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
    '' AS detail_key,
    COUNT(*) AS detail_count,
    MIN(COALESCE(e.planned_start, s.debut)) AS detail_date
FROM {batch} s
JOIN enrolment e ON e.kairos_session_id = s.id
WHERE e.current_status = 'inscrit'
  AND COALESCE(e.planned_start, s.debut) < :as_of_minus_3
GROUP BY
    s.id,
    s.source,
    s.carif_formation_numero,
    s.carif_action_numero,
    s.carif_session_numero,
    s.dispensateur_siret,
    s.mandataire_siret,
    s.place_departement
