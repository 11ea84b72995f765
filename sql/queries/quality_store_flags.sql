-- Store one rule's flags for check run :check_run_id, set-based (issue 7: the flags never
-- travel through Python). `{rule_query}` is the rule's own query (sql/checks/<rule>.sql, its
-- `{batch}` already replaced by kairos_session); quality_checks/runner.py splices it in.
--
-- Scope: the rule reads the whole database; only the scope's flags are stored
-- (:scope = '' for every source).
-- One flag per flag_key (rule|source|session|dispensateur|detail_key, the identity compared
-- across runs): the same slot key can come back under two origins (LHEO and KAIROS); it is
-- one problem, so the rows merge and their counts add up.
-- message stays NULL: it is rendered from rules.yaml when read (migration 0005).
INSERT INTO quality_check_result (
    check_run_id, rule_id, severity, as_of, kairos_session_id, source,
    carif_formation_numero, carif_action_numero, carif_session_numero,
    dispensateur_siret, mandataire_siret, departement,
    detail_key, detail_count, detail_date, message, flag_key
)
SELECT
    :check_run_id,
    :rule_id,
    :severity,
    :as_of,
    MIN(f.kairos_session_id),
    MIN(f.source),
    MIN(f.carif_formation_numero),
    MIN(f.carif_action_numero),
    MIN(f.carif_session_numero),
    MIN(f.dispensateur_siret),
    MIN(f.mandataire_siret),
    MIN(f.departement),
    COALESCE(f.detail_key, ''),
    SUM(f.detail_count),
    MAX(f.detail_date),
    NULL,
    :rule_id || '|' || COALESCE(f.source, '') || '|' || COALESCE(f.carif_session_numero, '')
        || '|' || COALESCE(f.dispensateur_siret, '') || '|' || COALESCE(f.detail_key, '')
FROM (
{rule_query}
) f
WHERE :scope = '' OR f.source = :scope
GROUP BY
    COALESCE(f.source, ''),
    COALESCE(f.carif_session_numero, ''),
    COALESCE(f.dispensateur_siret, ''),
    COALESCE(f.detail_key, '')
