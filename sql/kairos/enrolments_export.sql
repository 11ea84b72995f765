-- One row per enrolment for `kairos-sync export enrolments` (docs/kairos-exports.md).
-- Only pseudonyms: the database holds no candidate identifier in clear.
SELECT e.carif_session_numero AS carif_session,
       e.carif_action_numero AS carif_action,
       e.dispensateur_siret,
       e.kairos_session_id,
       e.candidate,
       e.current_status AS status,
       e.status_date,
       e.origin,
       e.modality,
       e.first_source AS source,
       e.planned_start,
       e.planned_end,
       e.entry_date,
       e.exit_date
FROM enrolment AS e
ORDER BY e.carif_session_numero, e.dispensateur_siret, e.candidate;
