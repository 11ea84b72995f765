-- KAIROS accounts (adherent conventions) of siret valid on on_date (docs/kairos-exports.md).
-- A blank convention start means "valid since always", a blank end "still running":
-- the adherents list leaves them empty for open-ended conventions.
-- Parameters: siret (14 digits), on_date (date).
SELECT a.siret,
       a.libelle,
       a.convention,
       a.convention_start,
       a.convention_end
FROM kairos_adherent AS a
WHERE a.siret = :siret
  AND (a.convention_start IS NULL OR a.convention_start <= :on_date)
  AND (a.convention_end IS NULL OR a.convention_end >= :on_date)
ORDER BY a.convention_start, a.convention;
