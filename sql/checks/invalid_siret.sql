-- invalid_siret: the mandataire's or the dispensateur's SIRET of a current, not ended
-- session fails its check: 14 digits with a Luhn check digit, La Poste (SIREN 356000000)
-- excepted (DOMAIN.md, "Mandataire and dispensateur"; Normandie deck "SMF et KAIROS": "OF responsable (avec N° DA
-- et Siret unique)"). The check itself runs once, in the loader (transforms: siret_is_valid),
-- which stores *_siret_valid; SQL has no portable Luhn. Blank and all-zero SIRETs fail it.
-- detail_key: 'dispensateur' or 'mandataire' (a session can have both flags).
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
    'dispensateur' AS detail_key,
    CAST(NULL AS INTEGER) AS detail_count,
    CAST(NULL AS DATE) AS detail_date
FROM {batch} s
WHERE s.closed_at IS NULL
  AND (s.fin IS NULL OR s.fin >= :as_of)
  AND NOT s.dispensateur_siret_valid
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
    'mandataire',
    CAST(NULL AS INTEGER),
    CAST(NULL AS DATE)
FROM {batch} s
WHERE s.closed_at IS NULL
  AND (s.fin IS NULL OR s.fin >= :as_of)
  AND NOT s.mandataire_siret_valid
