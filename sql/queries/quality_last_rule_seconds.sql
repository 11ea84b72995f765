-- The per-rule timings (summary_json.rule_seconds) of the latest succeeded check run of a
-- scope (:scope, '' = all sources): the runner starts the rules that took longest first.
SELECT summary_json
FROM quality_check_run
WHERE status = 'succeeded'
  AND COALESCE(source, '') = :scope
ORDER BY id DESC
LIMIT 1
