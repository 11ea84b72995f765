-- no_recruitment_modality: a session recruiting on :as_of on which no recruitment modality
-- (ICO, RDVI, candidature window) was ever entered: "pas de modalité de recrutement
-- renseignée" (seed 000, "Quelques cas souvent rencontrés"); "La saisie d'une session va
-- permettre la visibilité de la formation, mais pas la prescription" (seed 002).
-- A sub-case of no_open_recruitment_modality with a more precise message. LHEO modalities
-- other than 7/8/9 (tests, dossier… stored as 'other') are not KAIROS modalities.
-- "Recruiting": {recruiting_session} (sql/checks/fragments/). `{batch}` = kairos_session.
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
    CAST(NULL AS INTEGER) AS detail_count,
    s.debut AS detail_date
FROM {batch} s
WHERE {recruiting_session}
  AND NOT EXISTS (
      SELECT 1
      FROM recruitment_slot r
      WHERE r.kairos_session_id = s.id
        AND r.closed_at IS NULL
        AND r.modality IN ('ico', 'rdvi', 'candidature')
  )
