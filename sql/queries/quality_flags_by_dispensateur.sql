-- Flags of one check run per dispensateur SIRET (the party who acts), worst first: most
-- blocking flags, then most flags. The raison sociale comes from the loaded sessions.
SELECT
    c.dispensateur_siret,
    MAX(k.dispensateur_raison_sociale) AS raison_sociale,
    SUM(CASE WHEN c.severity = 'error' THEN 1 ELSE 0 END) AS errors,
    SUM(CASE WHEN c.severity = 'warning' THEN 1 ELSE 0 END) AS warnings,
    COUNT(*) AS flags,
    COUNT(DISTINCT c.kairos_session_id) AS sessions
FROM quality_check_result c
LEFT JOIN kairos_session k ON k.id = c.kairos_session_id
WHERE c.check_run_id = :run_id
GROUP BY c.dispensateur_siret
ORDER BY errors DESC, flags DESC, c.dispensateur_siret
