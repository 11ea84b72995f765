-- One rule's flags as quality_check_result rows, for check run :check_run_id. `{rule_query}`
-- is the rule's own query (sql/checks/<rule>.sql, its `{batch}` already replaced by
-- kairos_session); quality_checks/runner.py splices it in. Stored by
-- quality_store_flags.sql, counted by quality_count_flags.sql (dry runs).
--
-- Scope: the rule reads the whole database; only the scope's flags are kept
-- (:scope = '' for every source).
-- One flag per flag_key (rule|source|session|dispensateur|detail_key, the identity compared
-- across runs): the same slot key can come back under two origins (LHEO and KAIROS); it is
-- one problem, so the rows merge and their counts add up.
-- message stays NULL: it is rendered from rules.yaml when read (migration 0005).
SELECT
    :check_run_id AS check_run_id,
    :rule_id AS rule_id,
    :severity AS severity,
    :as_of AS as_of,
    MIN(f.kairos_session_id) AS kairos_session_id,
    MIN(f.source) AS source,
    MIN(f.carif_formation_numero) AS carif_formation_numero,
    MIN(f.carif_action_numero) AS carif_action_numero,
    MIN(f.carif_session_numero) AS carif_session_numero,
    MIN(f.dispensateur_siret) AS dispensateur_siret,
    MIN(f.mandataire_siret) AS mandataire_siret,
    MIN(f.departement) AS departement,
    COALESCE(f.detail_key, '') AS detail_key,
    SUM(f.detail_count) AS detail_count,
    MAX(f.detail_date) AS detail_date,
    NULL AS message,
    :rule_id || '|' || COALESCE(f.source, '') || '|' || COALESCE(f.carif_session_numero, '')
        || '|' || COALESCE(f.dispensateur_siret, '') || '|' || COALESCE(f.detail_key, '')
        AS flag_key
FROM (
{rule_query}
) f
WHERE :scope = '' OR f.source = :scope
GROUP BY
    COALESCE(f.source, ''),
    COALESCE(f.carif_session_numero, ''),
    COALESCE(f.dispensateur_siret, ''),
    COALESCE(f.detail_key, '')
