-- inconsistent_dates: dates of a current, not ended session that contradict each other.
--   'end_before_start'        fin < debut;
--   'ico_after_start:<slot>'  an ICO dated after the start of a fixed-date session: "les dates
--                             de session doivent exister avant les dates d'ICO" and the ICO
--                             recruits for the session (FAQ Occitanie, question 1; DOMAIN.md
--                             "Recruitment modalities"); an ICO on the start day is accepted.
--                             An action's date-information is given only to the sessions
--                             not started on its day (transforms/kairos_mapping.py): only a
--                             meeting the offer put on the session itself comes here;
--   'slot_after_end:<slot>'   a recruitment slot starting after the session's last day;
--   'slot_reversed:<slot>'    a slot ending before it starts.
-- Reversed sessions are checked while their later date (debut) is not past. Only current
-- slots, not cancelled in KAIROS; <slot> is modality:slot_key; detail_date = the offending
-- date.
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
    'end_before_start' AS detail_key,
    CAST(NULL AS INTEGER) AS detail_count,
    s.fin AS detail_date
FROM {batch} s
WHERE s.closed_at IS NULL
  AND s.fin < s.debut
  AND s.debut >= :as_of
UNION ALL
SELECT
    s.id,
    s.source,
    s.carif_formation_numero,
    s.carif_action_numero,
    s.carif_session_numero,
    s.dispensateur_siret,
    s.mandataire_siret,
    s.place_departement,
    CASE
        WHEN r.ends_on < r.starts_on THEN 'slot_reversed:'
        WHEN r.modality = 'ico'
             AND COALESCE(s.modalites_entrees_sorties, 0) <> 1
             AND r.starts_on > s.debut THEN 'ico_after_start:'
        ELSE 'slot_after_end:'
    END || r.modality || ':' || r.slot_key,
    CAST(NULL AS INTEGER),
    r.starts_on
FROM {batch} s
JOIN recruitment_slot r ON r.kairos_session_id = s.id
WHERE s.closed_at IS NULL
  AND (s.fin IS NULL OR s.fin >= :as_of)
  AND r.closed_at IS NULL
  AND COALESCE(r.status, 'open') <> 'cancelled'
  AND r.modality IN ('ico', 'rdvi', 'candidature')
  AND (
      r.ends_on < r.starts_on
      OR (
          r.modality = 'ico'
          AND COALESCE(s.modalites_entrees_sorties, 0) <> 1
          AND r.starts_on > s.debut
      )
      OR r.starts_on > s.fin
  )
