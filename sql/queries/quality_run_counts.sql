-- Figures of one check run, from its stored flags: flags per rule, and the distinct
-- sessions flagged by :headline_rule (the "blocked" headline figure).
SELECT
    rule_id,
    COUNT(*) AS flags,
    COUNT(DISTINCT CASE WHEN rule_id = :headline_rule THEN kairos_session_id END) AS blocked
FROM quality_check_result
WHERE check_run_id = :run_id
GROUP BY rule_id
