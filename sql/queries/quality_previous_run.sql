-- The check run a report compares with: the latest succeeded run of the same scope
-- (:scope = source name, '' for all sources) on an earlier as-of date than :as_of.
SELECT id, as_of
FROM quality_check_run
WHERE status = 'succeeded'
  AND COALESCE(source, '') = :scope
  AND as_of < :as_of
ORDER BY as_of DESC, id DESC
LIMIT 1
