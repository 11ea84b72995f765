-- Store one rule's flags for a check run, set-based (the flags never travel through
-- Python; docs/performance.md). `{flag_rows}` is quality_flag_rows.sql with the rule
-- spliced in.
INSERT INTO quality_check_result (
    check_run_id, rule_id, severity, as_of, kairos_session_id, source,
    carif_formation_numero, carif_action_numero, carif_session_numero,
    dispensateur_siret, mandataire_siret, departement,
    detail_key, detail_count, detail_date, message, flag_key
)
{flag_rows}
