-- Trend of the headline figures: for each of the last :limit as-of dates up to :as_of, the
-- latest succeeded check run of the scope (:scope, '' = all sources). Newest first.
SELECT
    r.id,
    r.as_of,
    r.sessions_current,
    r.sessions_recruiting,
    r.sessions_blocked,
    r.sessions_unverified,
    r.flags_total
FROM quality_check_run r
WHERE r.status = 'succeeded'
  AND COALESCE(r.source, '') = :scope
  AND r.as_of <= :as_of
  AND r.id = (
      SELECT MAX(r2.id)
      FROM quality_check_run r2
      WHERE r2.status = 'succeeded'
        AND COALESCE(r2.source, '') = :scope
        AND r2.as_of = r.as_of
  )
ORDER BY r.as_of DESC
LIMIT :limit
