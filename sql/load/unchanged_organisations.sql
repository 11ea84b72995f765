-- The organisation rows (JSON) of the formations skipped as unchanged, with the place in
-- document order each formation has in this snapshot.
SELECT s.seq, d.organisations
FROM stg_formation_seen AS s
JOIN formation_digest AS d
  ON d.source = :source
 AND d.carif_formation_numero = s.carif_formation_numero
 AND d.digest = s.digest
WHERE s.state = 1
ORDER BY s.seq;
