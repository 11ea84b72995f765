-- `kairos-sync export sessions`: open KAIROS sessions in a stable order (id), for streaming.
SELECT id,
       source,
       carif_formation_numero AS carif_formation,
       carif_action_numero AS carif_action,
       carif_session_numero AS carif_session,
       dispensateur_siret,
       dispensateur_raison_sociale,
       mandataire_siret,
       split_reason,
       intitule,
       main_formacode,
       etat_recrutement,
       debut,
       debut_precision,
       fin,
       fin_precision,
       place_city,
       place_postal_code,
       funded_places_total
FROM kairos_session
WHERE closed_at IS NULL
ORDER BY id;
