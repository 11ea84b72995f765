-- The "blocked" headline figure of one check run: distinct sessions flagged by the
-- headline rule.
SELECT COUNT(DISTINCT kairos_session_id) AS blocked
FROM quality_check_result
WHERE check_run_id = :run_id
  AND rule_id = :headline_rule
