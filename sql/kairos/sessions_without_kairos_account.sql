-- Open KAIROS sessions whose dispensateur has no valid KAIROS account on on_date:
-- "Un OF dispensateur = un SIRET = un compte Kairos" (Normandie deck "SMF et KAIROS" and "Rappel : les obligations légales" deck), so nobody can enter
-- recruitment or attendance for them. Parameters: on_date (date).
SELECT k.id AS kairos_session_id,
       k.source,
       k.carif_session_numero,
       k.dispensateur_siret,
       k.mandataire_siret
FROM kairos_session AS k
WHERE k.closed_at IS NULL
  AND NOT EXISTS (
      SELECT 1
      FROM kairos_adherent AS a
      WHERE a.siret = k.dispensateur_siret
        AND (a.convention_start IS NULL OR a.convention_start <= :on_date)
        AND (a.convention_end IS NULL OR a.convention_end >= :on_date))
ORDER BY k.source, k.carif_session_numero, k.dispensateur_siret;
