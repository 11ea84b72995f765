-- {recruiting_dates}: the dates of the KAIROS session `s` let it recruit on :as_of, whatever
-- its recruitment state (docs/quality-checks.md, "Recruiting on D"):
--   permanent entries/exits (modalites_entrees_sorties = 1): not ended (fin >= :as_of, or
--   unknown end);
--   fixed dates (0 or unknown): not yet started (debut > :as_of, or unknown start), or
--   :as_of inside its registration period (periode-inscription: registration still open
--   after the start, a NULL bound being open) while the session has not ended.
(s.modalites_entrees_sorties = 1 AND (s.fin IS NULL OR s.fin >= :as_of))
OR (
    COALESCE(s.modalites_entrees_sorties, 0) <> 1
    AND (
        s.debut IS NULL
        OR s.debut > :as_of
        OR (
            s.registration_raw IS NOT NULL
            AND (s.registration_debut IS NULL OR s.registration_debut <= :as_of)
            AND (s.registration_fin IS NULL OR s.registration_fin >= :as_of)
            AND (s.fin IS NULL OR s.fin >= :as_of)
        )
    )
)
