-- {recruiting_session}: the KAIROS session `s` is recruiting on :as_of — the one definition
-- the rules share (no_open_recruitment_modality, no_recruitment_modality,
-- recruiting_without_places); quality_checks/rules.py splices it in where a rule writes
-- {recruiting_session}.
--   current (closed_at IS NULL) and etat_recrutement = 1 (ouvert), and
--   permanent entries/exits (modalites_entrees_sorties = 1): not ended (fin >= :as_of, or
--   unknown end); fixed dates (0 or unknown): not yet started (debut > :as_of, or unknown).
s.closed_at IS NULL
AND s.etat_recrutement = 1
AND (
    (s.modalites_entrees_sorties = 1 AND (s.fin IS NULL OR s.fin >= :as_of))
    OR (
        COALESCE(s.modalites_entrees_sorties, 0) <> 1
        AND (s.debut IS NULL OR s.debut > :as_of)
    )
)
