-- Rows of {table} whose {column} names a {target} row that does not exist: a reference the
-- database does not check per inserted row (migration 0008; core/integrity.py). Must be 0.
SELECT COUNT(*)
FROM {table} AS t
WHERE t.{column} IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM {target} AS r WHERE r.id = t.{column});
