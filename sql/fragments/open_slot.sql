-- {open_slot}: the recruitment slot `r` is an open modality on :as_of — one a prescriber can
-- position a candidate on (docs/quality-checks.md, "Open on D"):
--   current (closed_at IS NULL), not closed or cancelled in KAIROS (status), and its places
--   are not 0 (SIGMA cannot delete an information meeting: the OF sets its places to 0 or
--   gives it past dates, FAQ Occitanie, question 35; unknown places are open);
--   ico          its date (its last day, for a month) is on or after :as_of;
--   rdvi         a range of individual appointments not over: its last day on or after
--                :as_of (a range starting later is already bookable);
--   candidature  a reception window covering :as_of (bounds inclusive, NULL = open-ended).
-- LHEO modalities other than 7/8/9 (modality 'other') are not KAIROS modalities.
r.closed_at IS NULL
AND COALESCE(r.status, 'open') = 'open'
AND COALESCE(r.capacity, 1) <> 0
AND (
    (r.modality IN ('ico', 'rdvi') AND COALESCE(r.ends_on, r.starts_on) >= :as_of)
    OR (
        r.modality = 'candidature'
        AND (r.starts_on IS NULL OR r.starts_on <= :as_of)
        AND (r.ends_on IS NULL OR r.ends_on >= :as_of)
    )
)
