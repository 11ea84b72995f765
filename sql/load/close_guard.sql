-- Mass-closing guard: how many open sessions of the source the staged snapshot would close
-- (neither staged nor belonging to a formation skipped as unchanged).
SELECT COUNT(*) AS open_sessions,
       COALESCE(SUM(CASE WHEN s.seq IS NULL AND k.carif_formation_numero IS NULL
                         THEN 1 ELSE 0 END), 0) AS vanishing
FROM kairos_session AS t
LEFT JOIN stg_session AS s
       ON s.carif_session_numero = t.carif_session_numero
      AND s.dispensateur_siret = t.dispensateur_siret
LEFT JOIN stg_kept_formation AS k
       ON k.carif_formation_numero = t.carif_formation_numero
WHERE t.source = :source AND t.closed_at IS NULL;
