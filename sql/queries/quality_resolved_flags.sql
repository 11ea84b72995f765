-- Flags of check run :previous_run_id that check run :run_id no longer has ("résolu depuis
-- le dernier contrôle"): corrected, or the session stopped recruiting / vanished.
SELECT p.*
FROM quality_check_result p
WHERE p.check_run_id = :previous_run_id
  AND NOT EXISTS (
      SELECT 1
      FROM quality_check_result c
      WHERE c.check_run_id = :run_id
        AND c.flag_key = p.flag_key
  )
ORDER BY p.rule_id, p.dispensateur_siret, p.carif_session_numero, p.detail_key
