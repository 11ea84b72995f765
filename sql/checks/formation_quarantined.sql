-- formation_quarantined: the session's formation was rejected by the LHEO schema in its
-- source's latest snapshot (quarantined), so KAIROS keeps showing the session as it was last
-- loaded: whatever the OF changed since (dates, recruitment state, places, information
-- meetings) does not reach the prescribers. A KAIROS session never vanishes because its
-- formation failed validation (pipelines/load.py keeps it open, marked with the run that
-- first rejected it); the correction belongs to the OF responsable, in the CARIF-OREF's
-- entry tool ("Toutes les corrections … sont à réaliser via le CARIF OREF", obligations
-- deck).
-- detail_key: the latest rejection's first reason (`path: schema message (+n)`, no personal
-- data: docs/reader.md); detail_date: the day the formation was first rejected.
-- Current, not ended sessions. `{batch}` = kairos_session.
SELECT
    s.id AS kairos_session_id,
    s.source,
    s.carif_formation_numero,
    s.carif_action_numero,
    s.carif_session_numero,
    s.dispensateur_siret,
    s.mandataire_siret,
    s.place_departement AS departement,
    COALESCE(s.formation_rejected_reason, '') AS detail_key,
    CAST(NULL AS INTEGER) AS detail_count,
    s.formation_rejected_on AS detail_date
FROM {batch} s
WHERE s.closed_at IS NULL
  AND s.formation_rejected_run_id IS NOT NULL
  AND (s.fin IS NULL OR s.fin >= :as_of)
