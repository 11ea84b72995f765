-- Every flag of one check run, for the CSV attachment and `kairos-sync check`.
SELECT
    c.rule_id,
    c.severity,
    c.as_of,
    c.source,
    c.carif_formation_numero,
    c.carif_action_numero,
    c.carif_session_numero,
    c.dispensateur_siret,
    k.dispensateur_raison_sociale,
    c.mandataire_siret,
    c.departement,
    c.detail_key,
    c.detail_count,
    c.detail_date,
    c.message,
    c.kairos_session_id
FROM quality_check_result c
LEFT JOIN kairos_session k ON k.id = c.kairos_session_id
WHERE c.check_run_id = :run_id
ORDER BY c.rule_id, c.dispensateur_siret, c.carif_session_numero, c.detail_key
