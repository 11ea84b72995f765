-- The latest succeeded check run of a scope (:scope, '' = all sources) for one as-of date.
SELECT id, as_of
FROM quality_check_run
WHERE status = 'succeeded'
  AND COALESCE(source, '') = :scope
  AND as_of = :as_of
ORDER BY id DESC
LIMIT 1
