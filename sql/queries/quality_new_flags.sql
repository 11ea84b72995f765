-- Flags of check run :run_id that check run :previous_run_id did not have ("apparu depuis
-- le dernier contrôle"). Identity across runs = flag_key (rule|source|session|SIRET|detail).
SELECT c.*
FROM quality_check_result c
WHERE c.check_run_id = :run_id
  AND NOT EXISTS (
      SELECT 1
      FROM quality_check_result p
      WHERE p.check_run_id = :previous_run_id
        AND p.flag_key = c.flag_key
  )
ORDER BY c.rule_id, c.dispensateur_siret, c.carif_session_numero, c.detail_key
