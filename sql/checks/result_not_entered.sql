-- result_not_entered: candidates marked present at an ICO / RDVI / interview who still have
-- no result (retenu, retenu mis en attente, non retenu) when the recruitment ends. FAQ
-- Occitanie, questions 3, 21 and 22: presence is entered "dès la fin de l'information
-- collective", "vous saisissez le reste des informations à la fin du recrutement" — the
-- result is due at the end of the recruitment, not 15 days after the meeting. The KAIROS tab
-- "Saisir les résultats" lists them ("Rappel : les obligations légales" deck).
-- End of recruitment: the session (or the candidate's planned start, from the training
-- plan) starts within :result_days days (:result_due_by = :as_of + that; 7 by default) or has
-- started. With permanent entries and exits a session recruits until it ends: the
-- candidate's own planned start counts, else the presence dates back more than :result_days
-- days (:as_of_minus_result_days).
-- One flag per session; detail_count = candidates, detail_date = the earliest start.
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
    MIN(COALESCE(e.planned_start, s.debut, e.status_date)) AS detail_date
FROM {batch} s
JOIN enrolment e ON e.kairos_session_id = s.id
WHERE e.current_status = 'present'
  AND (
      (
          COALESCE(s.modalites_entrees_sorties, 0) <> 1
          AND COALESCE(e.planned_start, s.debut) <= :result_due_by
      )
      OR (
          s.modalites_entrees_sorties = 1
          AND (
              e.planned_start <= :result_due_by
              OR (e.planned_start IS NULL AND e.status_date < :as_of_minus_result_days)
          )
      )
  )
GROUP BY
    s.id,
    s.source,
    s.carif_formation_numero,
    s.carif_action_numero,
    s.carif_session_numero,
    s.dispensateur_siret,
    s.mandataire_siret,
    s.place_departement
