-- How many flags one rule would store (a dry run: read-only, nothing stored).
-- `{flag_rows}` is quality_flag_rows.sql with the rule spliced in: same scope and merging.
SELECT COUNT(*) AS flags
FROM (
{flag_rows}
) flagged
