-- no_open_recruitment_modality (headline): a KAIROS session recruiting on :as_of with no
-- open recruitment modality, so a prescriber sees free places but cannot position anyone
-- ("Dommage, on est bloqué !!!", seed 000; "Ne jamais laisser le prescripteur sans aucune
-- modalité de recrutement ouverte, tant que le recrutement est actif", seed 002).
--
-- Recruiting on :as_of ({recruiting_session}, sql/checks/fragments/recruiting_session.sql):
--   current (closed_at IS NULL), etat_recrutement = 1 (ouvert), and permanent entries/exits
--   (modalites_entrees_sorties = 1): not ended (fin >= :as_of); fixed dates (0 or
--   unknown): not yet started (debut > :as_of, or unknown).
-- Open modality on :as_of (a current slot):
--   ico          dated on or after :as_of (an ICO on the as-of date still counts);
--   rdvi         range still running (COALESCE(ends_on, starts_on) >= :as_of);
--   candidature  window covering :as_of (bounds inclusive, NULL = unbounded) with capacity
--                left (capacity NULL, or more than the enrolments positioned on it).
-- `{batch}` is Great Expectations' placeholder for the kairos_session table (the asset the
-- suite validates); quality_checks/runner.py substitutes it when running without GX.
-- detail_count: modalities ever entered (0 = none at all); detail_date: the last one's date.
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
    (
        SELECT COUNT(*)
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
        AND r.closed_at IS NULL
        AND (
            (r.modality = 'ico' AND r.starts_on >= :as_of)
            OR (r.modality = 'rdvi' AND COALESCE(r.ends_on, r.starts_on) >= :as_of)
            OR (
                r.modality = 'candidature'
                AND (r.starts_on IS NULL OR r.starts_on <= :as_of)
                AND (r.ends_on IS NULL OR r.ends_on >= :as_of)
                AND (
                    r.capacity IS NULL
                    OR r.capacity > (
                        SELECT COUNT(DISTINCT ev.enrolment_id)
                        FROM enrolment_event ev
                        WHERE ev.recruitment_slot_id = r.id
                          AND ev.status = 'positionne'
                    )
                )
            )
        )
  )
