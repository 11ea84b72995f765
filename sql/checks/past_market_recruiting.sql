-- past_market_recruiting: a guichet-unique (#Avenir-type) session still recruiting on a past
-- year's market. "Rappel : les obligations légales" deck ("Vigilance sur sessions #avenir"): "les modalités de recrutement
-- doivent être saisies sur le marché #avenir correspondant à l'année en cours … Sur le marché
-- 2020 … AUCUN RECRUTEMENT sur ce marché 2020".
-- Guichet unique is configuration (config/sources.yaml), recorded by the loader as
-- split_reason = 'guichet_unique'. The model has no market column: the market year is the
-- year the session starts (debut), so "past market" = debut < :year_start (1 January of the
-- as-of year). Recruiting = etat_recrutement 1 and not ended, or any slot still open
-- ({open_slot}, sql/fragments/open_slot.sql).
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
    CAST(NULL AS INTEGER) AS detail_count,
    s.debut AS detail_date
FROM {batch} s
WHERE s.closed_at IS NULL
  AND s.split_reason = 'guichet_unique'
  AND s.debut < :year_start
  AND (
      (s.etat_recrutement = 1 AND (s.fin IS NULL OR s.fin >= :as_of))
      OR EXISTS (
          SELECT 1
          FROM recruitment_slot r
          WHERE r.kairos_session_id = s.id
            AND {open_slot}
      )
  )
