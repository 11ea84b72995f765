"""One LHEO session, several dispensateurs: what each KAIROS session really gets
(transforms/dispensateurs.py, transforms/kairos_mapping.py). Records built in Python with
test_mapping's helpers; the generated offers' guichet-unique sessions at the end.

DOMAIN.md "Mandataire and dispensateur" (Normandie deck "SMF et KAIROS": "créer autant de
sessions que de lieux et d'OF dispensateurs"; #Avenir in the obligations deck).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from test_mapping import (
    MANDATAIRE,
    OF_A,
    OF_B,
    PLAIN,
    _d,
    action,
    by_dispensateur,
    formation,
    place,
    session,
)

from core.config import GuichetUniqueMatcher, SourceConfig
from samples.generator import write_offers
from transforms.kairos_mapping import map_formation
from transforms.lheo_dates import parse_lheo_date
from transforms.reader import read_offers
from transforms.records import Address, Coordinates, Formation, Recruitment, TrainingPlace

AVENIR = SourceConfig(
    name="nor", guichet_unique=(GuichetUniqueMatcher("mandataire_siret", MANDATAIRE),)
)


def test_funded_places_are_the_lheo_sessions_counted_once() -> None:
    rows = map_formation(formation(action(formateurs=(OF_A, OF_B))), PLAIN).sessions
    assert [r.funded_places_lheo for r in rows] == [12, 12]
    assert [r.funded_places_shared_by for r in rows] == [2, 2]
    # Totals over the KAIROS rows of one LHEO session add up to the LHEO figure.
    assert sum(r.funded_places_total or 0 for r in rows) == 12
    alone = map_formation(formation(action()), PLAIN).sessions[0]
    assert (alone.funded_places_total, alone.funded_places_lheo, alone.funded_places_shared_by) == (
        12,
        12,
        1,
    )


def test_an_action_information_meeting_belongs_to_the_sessions_not_started_on_its_day() -> None:
    """2.2: a meeting on 1 March recruits for the session starting on 1 March and for the
    one starting in June, not for the session that started in January."""
    info = (parse_lheo_date("20260301"),)
    a = action(
        sessions=(
            session("JAN", "20260105-20260430"),
            session("MAR", "20260301-20260630"),
            session("JUN", "20260601-20261031"),
        ),
        information_dates=info,
    )
    slots = map_formation(formation(a, version="2.2"), PLAIN).slots
    assert sorted(s.carif_session_numero for s in slots) == ["JUN", "MAR"]
    # With permanent entries and exits, a meeting belongs to every session not yet ended.
    permanent = replace(a, modalites_entrees_sorties=1)
    slots = map_formation(formation(permanent, version="2.2"), PLAIN).slots
    assert sorted(s.carif_session_numero for s in slots) == ["JAN", "JUN", "MAR"]


def _site(city: str, postal: str, siret: str | None = None, **kw: object) -> TrainingPlace:
    return TrainingPlace(
        coordinates=Coordinates(
            nom=f"Site {city}",
            address=Address(lines=("1 rue",), postal_code=postal, city=city),
        ),
        siret=siret,
        **kw,  # type: ignore[arg-type]
    )


def test_a_recrutement_at_one_dispensateurs_site_is_that_dispensateurs_only() -> None:
    at_caen = Recruitment(
        9, _d("20251201-20251201"), address=Address(postal_code="14000", city="CAEN")
    )
    at_rouen = Recruitment(
        9, _d("20251202-20251202"), address=Address(postal_code="76000", city="Rouen")
    )
    nowhere = Recruitment(8, _d("20251203-20251220"))
    a = action(
        formateurs=(OF_A, OF_B),
        places=(_site("Caen", "14000", OF_A), _site("Lisieux", "14100", OF_B)),
        sessions=(session(recrutements=(at_caen, at_rouen, nowhere)),),
    )
    slots = map_formation(formation(a), PLAIN).slots
    by_owner: dict[str, list[str]] = {}
    for slot in slots:
        by_owner.setdefault(slot.dispensateur_siret, []).append(str(slot.starts_on))
    # Caen is OF_A's own site: that meeting is OF_A's only; Rouen and no address: both.
    assert sorted(by_owner[OF_A]) == ["2025-12-01", "2025-12-02", "2025-12-03"]
    assert sorted(by_owner[OF_B]) == ["2025-12-02", "2025-12-03"]


def test_a_place_at_one_dispensateurs_site_is_that_dispensateurs_only() -> None:
    a = action(
        formateurs=(OF_A, OF_B),
        places=(
            _site("Caen", "14000", OF_A),
            _site("Caen", "14 000", None),  # the same site, written without its SIRET
            _site("Bayeux", "14400", None),  # nobody's own site: both dispensateurs'
        ),
    )
    rows = by_dispensateur(formation(a))
    places_a = [(p["name"], p["attached_by"]) for p in json.loads(rows[OF_A].places_json)]  # type: ignore[attr-defined]
    places_b = [(p["name"], p["attached_by"]) for p in json.loads(rows[OF_B].places_json)]  # type: ignore[attr-defined]
    assert places_a == [
        ("Site Caen", "siret"),
        ("Site Caen", "address"),
        ("Site Bayeux", "default"),
    ]
    assert places_b == [("Site Bayeux", "default")]


def _with_own_address(f: Formation, city: str, postal: str) -> Formation:
    own = Address(lines=("siège",), postal_code=postal, city=city)
    return replace(f, responsable=replace(f.responsable, address=own))


def test_single_versus_detached_place() -> None:
    # The responsable delivers at its own address: one place, its own site.
    home = _with_own_address(formation(action(places=(place("Caen"),))), "Caen", "14000")
    assert map_formation(home, PLAIN).sessions[0].split_reason == "single"
    # ...at another site than its own: detached.
    away = _with_own_address(
        formation(action(places=(place("Bayeux", postal="14400"),))), "Caen", "14000"
    )
    assert map_formation(away, PLAIN).sessions[0].split_reason == "detached_place"
    # A formateur whose one place carries no SIRET: its address is unknown, the place is its.
    one = formation(action(formateurs=(OF_A,), places=(place("Bayeux", postal="14400"),)))
    assert map_formation(one, PLAIN).sessions[0].split_reason == "single"
    # Several places: detached, whoever delivers.
    several = formation(action(formateurs=(OF_A,), places=(place("Caen"), place("Bayeux"))))
    assert map_formation(several, PLAIN).sessions[0].split_reason == "detached_place"
    # 2.2 follows the same rule (before: always single, the SIRET field being 2.3 only).
    away22 = replace(away, lheo_version="2.2")
    assert map_formation(away22, PLAIN).sessions[0].split_reason == "detached_place"


def test_the_place_shown_is_the_principal_one_else_the_first_with_an_address() -> None:
    no_address = TrainingPlace(coordinates=Coordinates(nom="Annexe", address=None))
    principal = _site("Rouen", "76000", principal=True)
    f = formation(action(places=(no_address, _site("Caen", "14000"), principal)))
    row = map_formation(f, PLAIN).sessions[0]
    assert (row.place_city, row.place_departement) == ("Rouen", "76")
    f = formation(action(places=(no_address, _site("Caen", "14000"))))
    assert map_formation(f, PLAIN).sessions[0].place_city == "Caen"


def test_guichet_unique_shows_the_mandataires_place_not_a_co_contractor_stub() -> None:
    f = formation(action(formateurs=(OF_A, OF_B), places=(_site("Caen", "14000"),)))
    [row] = map_formation(f, AVENIR).sessions
    assert row.split_reason == "guichet_unique" and row.dispensateur_siret == MANDATAIRE
    places = json.loads(row.places_json)
    assert [p["kind"] for p in places] == ["formateur", "formateur", "lieu"]
    assert (row.place_city, row.place_postal_code, row.place_departement) == ("Caen", "14000", "14")


def test_generated_guichet_unique_sessions_have_their_place(tmp_path: Path) -> None:
    """Before: most generated #Avenir sessions got no place and no département (their first
    listed 'place' was a co-contractor without address), hence a false 'lieu manquant'."""
    file = tmp_path / "nor.xml"
    write_offers(file, formations=150, seed=4, lheo_version="2.2")
    config = SourceConfig(
        name="nor", guichet_unique=(GuichetUniqueMatcher("extra", "#Avenir", "programme"),)
    )
    guichet = missing = 0
    for record in read_offers(file):
        if not isinstance(record, Formation):
            continue
        for row in map_formation(record, config).sessions:
            if row.split_reason != "guichet_unique":
                continue
            guichet += 1
            has_place = any(
                p.get("kind") == "lieu" and p.get("address") for p in json.loads(row.places_json)
            )
            if has_place and not (row.place_city and row.place_departement):
                missing += 1
    assert guichet > 20
    assert missing == 0


# ----------------------------------------------------------------- through a load and the checks


def test_loaded_offers_flag_neither_foreign_icos_nor_missing_places(
    db: str, tmp_path: Path
) -> None:
    """A generated 2.2 offer loaded with #Avenir as guichet unique: no 'ico_after_start' flag
    from an action's meeting on a session it never concerned, and no 'lieu manquant' on a
    guichet-unique session that has a place of training with an address."""
    import datetime as dt

    from test_load import CONFIG, query

    from pipelines.load import load_snapshot
    from quality_checks.runner import run_checks

    file = tmp_path / "nor.xml"
    write_offers(
        file, formations=150, seed=4, lheo_version="2.2", reference_date=dt.date(2026, 3, 1)
    )
    load_snapshot(file, source="nor", config=CONFIG, db_url=db)
    info_after_start = query(
        db,
        "SELECT COUNT(*) FROM recruitment_slot r JOIN kairos_session k"
        " ON k.id = r.kairos_session_id WHERE r.slot_key LIKE 'info:%'"
        " AND COALESCE(k.modalites_entrees_sorties, 0) <> 1 AND r.starts_on > k.debut",
    )[0][0]
    assert info_after_start == 0
    run = run_checks(db, dt.date(2026, 1, 15))
    foreign = [
        f
        for f in run.flags
        if f.rule_id == "inconsistent_dates"
        and ":info:" in f.detail_key
        and f.detail_key.startswith("ico_after_start")
    ]
    assert foreign == []
    guichet = {
        r[0]
        for r in query(
            db,
            "SELECT id FROM kairos_session WHERE split_reason = 'guichet_unique'"
            ' AND places_json LIKE \'%"kind":"lieu"%"postal_code":"%\'',
        )
    }
    assert len(guichet) > 20
    missing_place = [
        f
        for f in run.flags
        if f.rule_id == "missing_kairos_field"
        and f.kairos_session_id in guichet
        and "lieu" in f.detail_key.split(",")
    ]
    assert missing_place == []
    assert all(f.departement for f in run.flags if f.kairos_session_id in guichet)


def test_a_hand_made_23_offer_loads_split_as_the_rules_say(db: str, tmp_path: Path) -> None:
    """tests/fixtures/reader-2.3.xml, its second place made principal: two formateurs, one
    with its own site in Caen, a place without SIRET in Cherbourg, an ICO in Caen."""
    from lxml import etree
    from test_load import CONFIG, query

    from pipelines.load import load_snapshot

    fixture = Path(__file__).parent / "fixtures" / "reader-2.3.xml"
    tree = etree.parse(str(fixture))
    ns = "http://lheo.gouv.fr/2.3"
    places = tree.getroot().findall(f".//{{{ns}}}lieu-de-formation")
    places[1].set("tag", "principal")
    offers = tmp_path / "offers.xml"
    tree.write(str(offers), xml_declaration=True, encoding="utf-8")
    load_snapshot(offers, source="occ", config=CONFIG, db_url=db)
    rows = {
        r.dispensateur_siret: r
        for r in query(
            db,
            "SELECT id, dispensateur_siret, split_reason, place_city, place_departement,"
            " funded_places_total, funded_places_lheo, funded_places_shared_by"
            " FROM kairos_session WHERE carif_session_numero = 'S-RD-1'",
        )
    }
    own, other = "73282932000074", "55208131766522"
    assert set(rows) == {own, other}
    assert {r.split_reason for r in rows.values()} == {"co_contracting"}
    # The principal place is shown (Cherbourg), with its département derived (50).
    assert (rows[other].place_city, rows[other].place_departement) == ("Cherbourg", "50")
    assert (rows[own].place_city, rows[own].place_departement) == ("Cherbourg", "50")
    assert [rows[s].funded_places_lheo for s in (own, other)] == [12, 12]
    assert sorted(rows[s].funded_places_total for s in (own, other)) == [0, 12]
    assert {rows[s].funded_places_shared_by for s in (own, other)} == {2}
    slots = {
        s: sorted(
            r.modality
            for r in query(
                db,
                "SELECT modality FROM recruitment_slot WHERE kairos_session_id = :i",
                i=rows[s].id,
            )
        )
        for s in (own, other)
    }
    # The ICO is held at the first formateur's own site (Caen): its session's only.
    assert slots[own] == ["candidature", "ico", "other", "rdvi"]
    assert slots[other] == ["candidature", "other", "rdvi"]
