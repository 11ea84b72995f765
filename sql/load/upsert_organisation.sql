-- Organisations are shared by every source (one SIRET, one row): insert new ones, rewrite a
-- known one only when its content hash changed. `WHERE true` lets SQLite parse the upsert.
INSERT INTO organisation ({columns}, first_seen_run_id, last_seen_run_id)
SELECT {columns}, :run_id, :run_id FROM stg_organisation WHERE true
ON CONFLICT (siret) DO UPDATE SET
    siret_valid = excluded.siret_valid,
    raison_sociale = excluded.raison_sociale,
    nom = excluded.nom,
    numero_activite = COALESCE(excluded.numero_activite, organisation.numero_activite),
    content_hash = excluded.content_hash,
    last_seen_run_id = excluded.last_seen_run_id
WHERE organisation.content_hash <> excluded.content_hash;
