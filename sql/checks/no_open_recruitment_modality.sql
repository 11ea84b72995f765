-- no_open_recruitment_modality (headline): a KAIROS session recruiting on :as_of with no
-- open recruitment modality, so a prescriber sees free places but cannot position anyone
-- ("Dommage, on est bloqué !!!", Normandie deck "SMF et KAIROS"; "Ne jamais laisser le
-- prescripteur sans aucune modalité de recrutement ouverte, tant que le recrutement est
-- actif", "Rappel : les obligations légales" deck).
--
-- Recruiting: {recruiting_session} (sql/fragments/recruiting_session.sql). Open:
-- {open_slot} (sql/fragments/open_slot.sql), over every current slot of the session: the
-- offer's (origin lheo) and KAIROS's (origin kairos: the modalities export, the
-- appointments export).
-- RDVI ranges and candidature windows are entered in KAIROS, not in the offer: the flag says
-- what it rests on (detail_key):
--   'blocked'             a KAIROS modalities export covering the session's source was
--                         seen recently ({kairos_checked}): nothing is open there either;
--   'kairos_not_checked'  no such export: no modality is visible in the offer, KAIROS was
--                         not checked;
--   + ':ico_undated'      the offer announces an information meeting without a date
--                         (`00000000`), which nobody can book.
-- detail_count: the distinct modalities ever entered (the same ICO seen in the offer and in
-- KAIROS counts once: same modality and date); detail_date: the last one's (last) day.
-- `{batch}` is Great Expectations' placeholder for the kairos_session table.
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
    (
        SELECT COUNT(DISTINCT r.modality || ':' || COALESCE(CAST(r.starts_on AS TEXT), '')
            || CASE WHEN r.modality = 'ico' THEN ''
                    ELSE ':' || COALESCE(CAST(r.ends_on AS TEXT), '') END)
        FROM recruitment_slot r
        WHERE r.kairos_session_id = s.id
          AND r.closed_at IS NULL
          AND r.modality IN ('ico', 'rdvi', 'candidature')
    ) AS detail_count,
    (
        SELECT MAX(COALESCE(r.ends_on, r.starts_on))
        FROM recruitment_slot r
        WHERE r.kairos_session_id = s.id
          AND r.closed_at IS NULL
          AND r.modality IN ('ico', 'rdvi', 'candidature')
    ) AS detail_date
FROM {batch} s
WHERE {recruiting_session}
  AND NOT EXISTS (
      SELECT 1
      FROM recruitment_slot r
      WHERE r.kairos_session_id = s.id
        AND {open_slot}
  )
