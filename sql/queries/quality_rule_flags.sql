-- The flags one rule left in one check run: what Great Expectations validates (success =
-- no row). `{batch}` is GX's placeholder for the quality_check_result table (a subquery,
-- hence the alias).
SELECT
    rule_id,
    source,
    carif_session_numero,
    dispensateur_siret,
    detail_key,
    detail_count
FROM {batch} stored
WHERE check_run_id = :check_run_id
  AND rule_id = :rule_id
