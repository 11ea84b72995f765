-- no_recruitment_modality: a session recruiting on :as_of on which no recruitment modality
-- (ICO, RDVI, candidature window) was ever entered, open or not: "pas de modalité de
-- recrutement renseignée" (Normandie deck "SMF et KAIROS", "Quelques cas souvent
-- rencontrés"); "La saisie d'une session va permettre la visibilité de la formation, mais
-- pas la prescription" (FAQ Occitanie, question 2).
-- A sub-case of no_open_recruitment_modality with a more precise message, and the same
-- detail_key: 'blocked' (a recent KAIROS modalities export shows none either) or
-- 'kairos_not_checked' (none in the offer, KAIROS not checked), + ':ico_undated' when the
-- offer announces an information meeting without a date. LHEO modalities other than 7/8/9
-- ('other': tests, dossier…) are not KAIROS modalities.
-- "Recruiting": {recruiting_session} (sql/fragments/). `{batch}` = kairos_session.
SELECT
    s.id AS kairos_session_id,
    s.source,
    s.carif_formation_numero,
    s.carif_action_numero,
    s.carif_session_numero,
    s.dispensateur_siret,
    s.mandataire_siret,
    s.place_departement AS departement,
    CASE WHEN {kairos_checked} THEN 'blocked' ELSE 'kairos_not_checked' END
        || CASE WHEN s.undated_ico_count > 0 THEN ':' || 'ico_undated' ELSE '' END AS detail_key,
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
