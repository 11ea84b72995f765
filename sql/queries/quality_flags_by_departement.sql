-- Flags of one check run per département of the place of training ('' when unknown).
SELECT
    COALESCE(departement, '') AS departement,
    SUM(CASE WHEN severity = 'error' THEN 1 ELSE 0 END) AS errors,
    COUNT(*) AS flags,
    COUNT(DISTINCT kairos_session_id) AS sessions
FROM quality_check_result
WHERE check_run_id = :run_id
GROUP BY COALESCE(departement, '')
ORDER BY errors DESC, flags DESC, COALESCE(departement, '')
