-- Rewrite the rows of {table} whose staged content hash differs, and reopen closed rows that
-- came back. Unchanged open rows are not touched at all (no new tuple, no version).
UPDATE {table}
SET {assignments},
    last_seen_run_id = :run_id,
    closed_at = NULL,
    closed_run_id = NULL
FROM {staging} AS s
WHERE {scope} AND {match}
  AND ({table}.content_hash <> s.content_hash OR {table}.closed_at IS NOT NULL);
