-- Copies of a formation key beyond the first in this snapshot (the last one won,
-- dedupe_staging.sql); rejected formations without numero ('') are not one formation.
SELECT COALESCE(SUM(copies - 1), 0) FROM stg_formation_last WHERE carif_formation_numero <> '';
