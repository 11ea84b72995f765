-- single_session_several_places (good-practice warning): an action delivered in several
-- places or by several dispensateurs but described by one LHEO session. The Normandie deck
-- "SMF et KAIROS": "créer autant de sessions que de lieux et d'OF dispensateurs"; the mapping
-- then had to split the session per dispensateur (split_reason 'co_contracting') or keep
-- several places in one KAIROS session (places_json).
--   detail_key 'several_dispensateurs': the action's only LHEO session gave several KAIROS
--     sessions (detail_count = how many dispensateurs);
--   detail_key 'several_places': the KAIROS session lists more than one place of training.
--     places_json is compact JSON written by transforms/kairos_mapping.py; counting two
--     '"kind":"lieu"' with LIKE avoids json_array_length, which differs between PostgreSQL
--     (json type needed) and SQLite.
-- Guichet unique sessions are excluded: there, co-contractors are detached places on purpose
-- ("Rappel : les obligations légales" deck). Current, not ended sessions only. `{batch}` = kairos_session.
WITH action_sessions AS (
    SELECT
        s.source,
        s.carif_action_numero,
        COUNT(DISTINCT s.carif_session_numero) AS lheo_sessions,
        COUNT(DISTINCT s.dispensateur_siret) AS dispensateurs
    FROM {batch} s
    WHERE s.closed_at IS NULL
    GROUP BY s.source, s.carif_action_numero
)
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
        WHEN a.dispensateurs > 1 THEN 'several_dispensateurs'
        ELSE 'several_places'
    END AS detail_key,
    CASE WHEN a.dispensateurs > 1 THEN a.dispensateurs END AS detail_count,
    CAST(NULL AS DATE) AS detail_date
FROM {batch} s
JOIN action_sessions a
    ON a.source = s.source
   AND a.carif_action_numero = s.carif_action_numero
WHERE s.closed_at IS NULL
  AND (s.fin IS NULL OR s.fin >= :as_of)
  AND s.split_reason <> 'guichet_unique'
  AND a.lheo_sessions = 1
  AND (
      a.dispensateurs > 1
      OR s.places_json LIKE '%"kind":"lieu"%"kind":"lieu"%'
  )
