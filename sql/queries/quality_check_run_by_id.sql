-- One stored check run, to report it without evaluating the rules again.
SELECT id, run_ledger_id, source, as_of, status, sessions_current, sessions_recruiting,
       sessions_blocked, sessions_unverified, summary_json
FROM quality_check_run
WHERE id = :id
