-- How many flags one rule would store (a dry run: read-only, nothing stored). Same scope
-- and merging as quality_store_flags.sql: one flag per flag_key.
SELECT COUNT(*) AS flags
FROM (
    SELECT 1
    FROM (
{rule_query}
    ) f
    WHERE :scope = '' OR f.source = :scope
    GROUP BY
        COALESCE(f.source, ''),
        COALESCE(f.carif_session_numero, ''),
        COALESCE(f.dispensateur_siret, ''),
        COALESCE(f.detail_key, '')
) flagged
