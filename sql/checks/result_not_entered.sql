-- result_not_entered: candidates marked present at an ICO / RDVI / interview for more than
-- 15 days with no result (retenu, retenu mis en attente, non retenu): the KAIROS tab "Saisir
-- les résultats de l'info coll" lists them (seed 002); "sa présence ou sa suite de
-- candidature n'est pas renseignée" (seed 000). 15 days: seed 004 (FAQ 3) discusses giving
-- the result "dans les 15 jours qui suivent la réunion d'information".
-- Boundary: status 'present' dated before :as_of_minus_15 (16 days or more ago).
-- One flag per session; detail_count = candidates, detail_date = the oldest presence.
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
    MIN(e.status_date) AS detail_date
FROM {batch} s
JOIN enrolment e ON e.kairos_session_id = s.id
WHERE e.current_status = 'present'
  AND e.status_date < :as_of_minus_15
GROUP BY
    s.id,
    s.source,
    s.carif_formation_numero,
    s.carif_action_numero,
    s.carif_session_numero,
    s.dispensateur_siret,
    s.mandataire_siret,
    s.place_departement
