-- missing_recruitment_state: a current session whose dates let it recruit on :as_of
-- ({recruiting_dates}) but which carries no `etat-recrutement`: KAIROS shows the state of the
-- recruitment on its screens 2 and 4 (Normandie deck "SMF et KAIROS": "Etat du
-- recrutement", "Statut du recrutement"), so the prescriber cannot see it as open. The
-- state is entered by the OF in the CARIF-OREF's tool.
-- How the other rules treat such a session: none of them counts it as recruiting
-- ({recruiting_session} asks for etat_recrutement = 1), so it is never "bloquée" nor in the
-- "en recrutement" headline figure; this rule is where it shows.
-- detail_key: 'open_modality' when a modality is open on :as_of ({open_slot}), else
-- 'no_open_modality'. `{batch}` = kairos_session.
SELECT
    s.id AS kairos_session_id,
    s.source,
    s.carif_formation_numero,
    s.carif_action_numero,
    s.carif_session_numero,
    s.dispensateur_siret,
    s.mandataire_siret,
    s.place_departement AS departement,
    CASE
        WHEN EXISTS (
            SELECT 1 FROM recruitment_slot r WHERE r.kairos_session_id = s.id AND {open_slot}
        ) THEN 'open_modality'
        ELSE 'no_open_modality'
    END AS detail_key,
    CAST(NULL AS INTEGER) AS detail_count,
    s.debut AS detail_date
FROM {batch} s
WHERE s.closed_at IS NULL
  AND s.etat_recrutement IS NULL
  AND {recruiting_dates}
