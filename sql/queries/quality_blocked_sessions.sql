-- The sessions blocked in check run :run_id (flagged by :rule_id, the headline rule) with
-- what an officer needs to act: CARIF numbers, title, the offer's URL, organisations
-- (raison sociale, SIRET, N° DA), dates, places. Organisations only: no person's name,
-- e-mail or phone is selected (personal data never reaches reports, docs/report.md).
SELECT
    c.rule_id,
    c.kairos_session_id,
    c.source,
    c.carif_formation_numero,
    c.carif_action_numero,
    c.carif_session_numero,
    c.detail_key,
    c.detail_count,
    c.detail_date,
    c.message,
    k.intitule,
    c.dispensateur_siret,
    k.dispensateur_raison_sociale,
    od.numero_activite AS dispensateur_numero_activite,
    c.mandataire_siret,
    k.mandataire_raison_sociale,
    COALESCE(k.mandataire_numero_activite, om.numero_activite) AS mandataire_numero_activite,
    k.debut,
    k.fin,
    k.modalites_entrees_sorties,
    k.funded_places_total,
    k.funded_places_lheo,
    k.funded_places_shared_by,
    k.place_postal_code,
    k.place_city,
    k.action_url,
    c.departement
FROM quality_check_result c
LEFT JOIN kairos_session k ON k.id = c.kairos_session_id
LEFT JOIN organisation od ON od.siret = c.dispensateur_siret
LEFT JOIN organisation om ON om.siret = c.mandataire_siret
WHERE c.check_run_id = :run_id
  AND c.rule_id = :rule_id
ORDER BY c.departement, c.dispensateur_siret, k.debut, c.carif_session_numero
