-- The "blocked" headline figures of one check run: distinct sessions flagged by the headline
-- rule, split by what the flag rests on (sql/checks/no_open_recruitment_modality.sql):
-- blocked = a recent KAIROS modalities export shows no open modality either; unverified =
-- none visible in the offer, KAIROS not checked.
SELECT
    COUNT(DISTINCT CASE WHEN detail_key LIKE 'blocked%' THEN kairos_session_id END) AS blocked,
    COUNT(DISTINCT CASE WHEN detail_key LIKE 'kairos_not_checked%' THEN kairos_session_id END)
        AS unverified
FROM quality_check_result
WHERE check_run_id = :run_id
  AND rule_id = :headline_rule
