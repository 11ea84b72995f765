-- Headline figures of a quality check run (docs/report.md): sessions synchronised (current,
-- i.e. still in their source's latest snapshot) and, among them, sessions recruiting on
-- :as_of, with the same definition as sql/checks/no_open_recruitment_modality.sql.
-- :scope is a source name, or '' for every source.
SELECT
    COUNT(*) AS sessions_current,
    COALESCE(SUM(
        CASE
            WHEN s.etat_recrutement = 1
             AND (
                 (s.modalites_entrees_sorties = 1 AND (s.fin IS NULL OR s.fin >= :as_of))
                 OR (
                     COALESCE(s.modalites_entrees_sorties, 0) <> 1
                     AND (s.debut IS NULL OR s.debut > :as_of)
                 )
             )
            THEN 1
            ELSE 0
        END
    ), 0) AS sessions_recruiting
FROM kairos_session s
WHERE s.closed_at IS NULL
  AND (:scope = '' OR s.source = :scope)
