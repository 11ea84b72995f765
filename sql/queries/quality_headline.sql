-- Headline figures of a quality check run (docs/report.md): sessions synchronised (current,
-- i.e. still in their source's latest snapshot) and, among them, sessions recruiting on
-- :as_of, by the rules' own definition (sql/checks/fragments/recruiting_session.sql).
-- :scope is a source name, or '' for every source.
SELECT
    COUNT(*) AS sessions_current,
    COALESCE(SUM(
        CASE
            WHEN {recruiting_session} THEN 1
            ELSE 0
        END
    ), 0) AS sessions_recruiting
FROM kairos_session s
WHERE s.closed_at IS NULL
  AND (:scope = '' OR s.source = :scope)
