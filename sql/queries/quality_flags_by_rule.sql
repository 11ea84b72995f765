-- Flags of one check run per rule: flags and distinct sessions.
SELECT
    rule_id,
    severity,
    COUNT(*) AS flags,
    COUNT(DISTINCT kairos_session_id) AS sessions
FROM quality_check_result
WHERE check_run_id = :run_id
GROUP BY rule_id, severity
