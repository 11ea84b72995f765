-- dispensateur_without_kairos_account: a current, not ended session whose dispensateur has no
-- KAIROS account valid on :as_of. "Un OF dispensateur = un SIRET = un compte Kairos"
-- (Normandie deck "SMF et KAIROS"); "un compte KAIROS est associé à un et un seul n° SIRET (organisme
-- dispensateur)" ("Rappel : les obligations légales" deck); the adherents export's convention period tells whether the
-- account is valid (DOMAIN.md, "Public export formats around KAIROS").
--   detail_key 'no_account': the SIRET is absent from the adherents list;
--   detail_key 'convention_not_valid': listed, but no convention covers :as_of (bounds
--     inclusive, a NULL bound is open); detail_date = the latest convention end.
-- Evaluated only once an adherents list was loaded: an empty kairos_adherent table means
-- "unknown", not "nobody has an account".
-- Guichet unique sessions already carry the mandataire's SIRET (split_reason, "Rappel : les obligations légales" deck).
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
    CASE
        WHEN EXISTS (SELECT 1 FROM kairos_adherent a WHERE a.siret = s.dispensateur_siret)
            THEN 'convention_not_valid'
        ELSE 'no_account'
    END AS detail_key,
    CAST(NULL AS INTEGER) AS detail_count,
    (
        SELECT MAX(a.convention_end)
        FROM kairos_adherent a
        WHERE a.siret = s.dispensateur_siret
    ) AS detail_date
FROM {batch} s
WHERE s.closed_at IS NULL
  AND (s.fin IS NULL OR s.fin >= :as_of)
  AND EXISTS (SELECT 1 FROM kairos_adherent)
  AND NOT EXISTS (
      SELECT 1
      FROM kairos_adherent a
      WHERE a.siret = s.dispensateur_siret
        AND (a.convention_start IS NULL OR a.convention_start <= :as_of)
        AND (a.convention_end IS NULL OR a.convention_end >= :as_of)
  )
