-- Staged slots get the id of their KAIROS session (all sessions exist after the upsert).
UPDATE stg_slot
SET kairos_session_id = t.id
FROM kairos_session AS t
WHERE t.source = :source
  AND t.carif_session_numero = stg_slot.carif_session_numero
  AND t.dispensateur_siret = stg_slot.dispensateur_siret;
