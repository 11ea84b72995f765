-- {recruiting_session}: the KAIROS session `s` is recruiting on :as_of — the one definition
-- the rules and the headline figures share (docs/quality-checks.md, "Recruiting on D"):
-- current (closed_at IS NULL: in its source's latest snapshot), etat_recrutement = 1
-- (ouvert; 2 fermé and 3 suspendu are not recruiting, and a session with no state is the
-- business of missing_recruitment_state), and its dates let it recruit
-- ({recruiting_dates}, sql/fragments/recruiting_dates.sql).
s.closed_at IS NULL
AND s.etat_recrutement = 1
AND {recruiting_dates}
