-- recruiting_without_places: a session recruiting on :as_of that offers no place, so the
-- recruitment state misleads advisers (KAIROS screen 4 "Financement – Nb de places – Statut
-- du recrutement", Normandie deck "SMF et KAIROS").
--   detail_key 'no_funded_place': no funder of the LHEO session declares a place
--     (funded_places_lheo NULL or 0: the LHEO session's figure, whichever of its
--     dispensateurs' KAIROS rows counts it);
--   detail_key 'slots_full': it has open modalities ({open_slot}) and every one of them has
--     a capacity already reached by the enrolments positioned on it; detail_count = the
--     open slots.
-- "Recruiting": {recruiting_session} (sql/fragments/), spliced into both branches rather than
-- put in a CTE: PostgreSQL materialises a CTE read twice, and the join on it then took
-- seconds on a few thousand sessions. `{batch}` = kairos_session.
WITH booked AS (
    SELECT ev.recruitment_slot_id AS slot_id, COUNT(DISTINCT ev.enrolment_id) AS n
    FROM enrolment_event ev
    WHERE ev.status = 'positionne'
      AND ev.recruitment_slot_id IS NOT NULL
    GROUP BY ev.recruitment_slot_id
),
open_slot AS (
    SELECT
        r.kairos_session_id,
        CASE
            WHEN r.capacity IS NOT NULL AND r.capacity <= COALESCE(b.n, 0) THEN 1
            ELSE 0
        END AS full_slot
    FROM recruitment_slot r
    LEFT JOIN booked b ON b.slot_id = r.id
    WHERE {open_slot}
),
session_slots AS (
    SELECT kairos_session_id, COUNT(*) AS open_slots, SUM(full_slot) AS full_slots
    FROM open_slot
    GROUP BY kairos_session_id
)
SELECT
    s.id AS kairos_session_id,
    s.source,
    s.carif_formation_numero,
    s.carif_action_numero,
    s.carif_session_numero,
    s.dispensateur_siret,
    s.mandataire_siret,
    s.place_departement AS departement,
    'no_funded_place' AS detail_key,
    s.funded_places_lheo AS detail_count,
    CAST(NULL AS DATE) AS detail_date
FROM {batch} s
WHERE {recruiting_session}
  AND COALESCE(s.funded_places_lheo, 0) <= 0
UNION ALL
SELECT
    s.id,
    s.source,
    s.carif_formation_numero,
    s.carif_action_numero,
    s.carif_session_numero,
    s.dispensateur_siret,
    s.mandataire_siret,
    s.place_departement,
    'slots_full',
    ss.open_slots,
    CAST(NULL AS DATE)
FROM {batch} s
JOIN session_slots ss ON ss.kairos_session_id = s.id
WHERE {recruiting_session}
  AND ss.full_slots = ss.open_slots
