"""What real LHEO records carry, mapped as a CARIF-OREF data engineer reads it
(transforms/placeholders.py, transforms/departement.py, transforms/kairos_mapping.py):
placeholders, `00000000` information dates, `periode-inscription`, missing départements.

Records are built in Python (test_mapping's helpers); the real 2.2 corpus of ../shared is
read where it says something the helpers cannot (every date-information there is
`00000000`).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_mapping import PLAIN, action, formation, place, session

from transforms.departement import derive_departement
from transforms.kairos_mapping import map_formation
from transforms.lheo_dates import parse_lheo_date
from transforms.placeholders import is_placeholder
from transforms.reader import read_offers
from transforms.records import Address, Coordinates, Formation, Period, Recruitment, TrainingPlace


@pytest.mark.parametrize(
    "text",
    ["-", ".", "Non renseigné", "NON RENSEIGNE", " nr ", "N.R.", "non-renseigné.", "- -", "", None],
)
def test_placeholders(text: str | None) -> None:
    assert is_placeholder(text)


@pytest.mark.parametrize("text", ["Caen", "Bac-pro", "Néant à signaler", "N", "Nr 12", "0"])
def test_real_texts_are_not_placeholders(text: str) -> None:
    assert not is_placeholder(text)


def test_placeholder_texts_are_kept_and_listed() -> None:
    where = Address(lines=("-",), postal_code=".", city="Non renseigné")
    lieu = TrainingPlace(coordinates=Coordinates(nom="-", address=where))
    f = replace(formation(action(places=(lieu,))), objectif="-", contenu=" NR ")
    row = map_formation(f, PLAIN).sessions[0]
    assert (row.objectif, row.contenu, row.place_city) == ("-", " NR ", "Non renseigné")
    assert row.placeholder_fields == "objectif,contenu,place_postal_code,place_city"
    clean = map_formation(formation(action(places=(place("Caen"),))), PLAIN).sessions[0]
    assert clean.placeholder_fields is None


def test_undated_information_meeting_is_a_fact_not_a_slot() -> None:
    unknown = parse_lheo_date("00000000")
    dated = parse_lheo_date("20251210")  # before the session starts (20260105)
    f = formation(action(information_dates=(unknown, dated, unknown)), version="2.2")
    mapped = map_formation(f, PLAIN)
    assert [s.slot_key for s in mapped.slots] == ["info:20251210"]
    assert mapped.sessions[0].undated_ico_count == 2
    # A 2.3 ICO recrutement without a usable date is the same fact.
    recrutements = (
        Recruitment(modality=9, period=Period(unknown, parse_lheo_date("99999999"))),
        Recruitment(modality=9),
        Recruitment(modality=8, period=Period(dated, dated)),
    )
    f23 = formation(action(sessions=(session(recrutements=recrutements),)))
    mapped = map_formation(f23, PLAIN)
    assert [s.modality for s in mapped.slots] == ["rdvi"]
    assert mapped.sessions[0].undated_ico_count == 2


def test_real_22_corpus_information_dates_give_no_slot(shared_dir: Path) -> None:
    """Every date-information of the real corpus is 00000000: no ICO slot, the count kept."""
    records = 0
    for path in sorted((shared_dir / "reference" / "real-lheo").glob("*.xml")):
        for record in read_offers(path, source="real"):
            assert isinstance(record, Formation), f"{path.name}: {record}"
            records += 1
            mapped = map_formation(record, PLAIN)
            assert not [s for s in mapped.slots if s.slot_key.startswith("info:")]
            announced = sum(len(a.information_dates) for a in record.actions)
            if announced:
                assert all(not d.is_known for a in record.actions for d in a.information_dates)
                assert max(s.undated_ico_count for s in mapped.sessions) > 0
    assert records == 18


def test_registration_period_is_stored() -> None:
    registration = Period(parse_lheo_date("20251201"), parse_lheo_date("20260131"))
    row = map_formation(
        formation(action(sessions=(session(registration_period=registration),))), PLAIN
    ).sessions[0]
    assert (row.registration_debut, row.registration_fin) == ("2025-12-01", "2026-01-31")
    assert row.registration_raw == "20251201-20260131"
    plain = map_formation(formation(), PLAIN).sessions[0]
    assert (plain.registration_debut, plain.registration_fin, plain.registration_raw) == (
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("departement", "insee", "postal", "expected"),
    [
        ("14", None, "75001", ("14", "element")),
        (" 37 ", "75056", None, ("37", "element")),
        (None, "37266", "14000", ("37", "insee")),
        ("-", "2A004", "20000", ("2A", "insee")),
        (None, "2B033", None, ("2B", "insee")),
        (None, "97411", None, ("974", "insee")),
        (None, None, "97100", ("971", "postal_code")),
        (None, None, "97600", ("976", "postal_code")),
        (None, None, "20090", ("2A", "postal_code")),
        (None, None, "20167", ("2A", "postal_code")),
        (None, None, "20200", ("2B", "postal_code")),
        (None, None, "20600", ("2B", "postal_code")),
        (None, None, "06000", ("06", "postal_code")),
        (None, "20004", "20000", ("2A", "postal_code")),  # a pre-1976 Corsican INSEE code
        (None, None, "1400", (None, None)),
        (None, "ABCDE", "B-1000", (None, None)),
        (None, None, None, (None, None)),
    ],
)
def test_departement_is_derived(
    departement: str | None, insee: str | None, postal: str | None, expected: tuple[object, ...]
) -> None:
    assert derive_departement(departement, insee, postal) == expected


def test_place_without_departement_gets_it_from_insee_or_postal_code() -> None:
    bastia = TrainingPlace(
        coordinates=Coordinates(
            nom="Site Bastia",
            address=Address(lines=("1 quai",), postal_code="20200", city="Bastia"),
        )
    )
    row = map_formation(formation(action(places=(bastia,))), PLAIN).sessions[0]
    assert row.place_departement == "2B"
    places = json.loads(row.places_json)
    assert places[0]["address"]["departement"] == "2B"
    assert places[0]["address"]["departement_from"] == "postal_code"


def test_horodatage_attributes_change_nothing_the_reader_extracts() -> None:
    """A 2.3 formation carrying horodatage-*/uri on every element (as the national flux
    writes it) is valid, and reads exactly as the same formation without them."""
    fixtures = Path(__file__).parent / "fixtures"
    stamped = list(read_offers(fixtures / "lheo-2.3-horodatage.xml", source="occ"))
    plain = list(read_offers(fixtures / "reader-2.3.xml", source="occ"))
    assert len(stamped) == 1 and isinstance(stamped[0], Formation)
    assert isinstance(plain[0], Formation)
    assert map_formation(stamped[0], PLAIN) == map_formation(plain[0], PLAIN)


# ----------------------------------------------------------------- through a real load


def _as_real_records_are(root: Any, ns: str) -> None:
    """The first formation as real records carry it: placeholders in its texts, no
    `departement` in any address, `00000000` as its information date, a registration period."""
    from lxml import etree

    formation = root.find(f"{{{ns}}}offres/{{{ns}}}formation")
    formation.find(f"{{{ns}}}objectif-formation").text = "-"
    formation.find(f"{{{ns}}}contenu-formation").text = "Non renseigné"
    for departement in list(formation.iter(f"{{{ns}}}departement")):
        departement.getparent().remove(departement)
    action = formation.find(f"{{{ns}}}action")
    for date in action.iterfind(f"{{{ns}}}date-information/{{{ns}}}date"):
        date.text = "00000000"
    if action.find(f"{{{ns}}}date-information") is None:
        holder = etree.Element(f"{{{ns}}}date-information")
        etree.SubElement(holder, f"{{{ns}}}date").text = "00000000"
        action.find(f"{{{ns}}}session").addnext(holder)
    session = action.find(f"{{{ns}}}session")
    if session.find(f"{{{ns}}}periode-inscription") is None:
        inscription = etree.Element(f"{{{ns}}}periode-inscription")
        periode = etree.SubElement(inscription, f"{{{ns}}}periode")
        etree.SubElement(periode, f"{{{ns}}}debut").text = "20260105"
        etree.SubElement(periode, f"{{{ns}}}fin").text = "20260220"
        session.find(f"{{{ns}}}adresse-inscription").addnext(inscription)


def test_real_record_traits_through_load_and_checks(db: str, tmp_path: Path) -> None:
    import datetime as dt

    from test_load import CONFIG, edited, generated, query

    from pipelines.load import load_snapshot
    from quality_checks.runner import run_checks

    offers = edited(generated(tmp_path, "2.2"), tmp_path / "real.xml", _as_real_records_are)
    entry = load_snapshot(offers, source="nor", config=CONFIG, db_url=db)
    assert entry.status == "succeeded"
    [first] = query(db, "SELECT carif_formation_numero FROM formation ORDER BY id LIMIT 1")
    rows = query(
        db,
        "SELECT id, objectif, contenu, placeholder_fields, place_departement, place_postal_code,"
        " undated_ico_count, registration_debut, registration_fin, debut, fin"
        " FROM kairos_session WHERE carif_formation_numero = :f ORDER BY id",
        f=first[0],
    )
    assert rows
    row = rows[0]
    assert (row.objectif, row.contenu) == ("-", "Non renseigné")
    assert row.placeholder_fields == "objectif,contenu"
    assert row.place_departement and row.place_postal_code.startswith(row.place_departement[:2])
    assert all(r.undated_ico_count >= 1 for r in rows)
    # The generator writes a registration period on most sessions; ours was added otherwise.
    raw = query(db, "SELECT registration_raw FROM kairos_session WHERE id = :i", i=row.id)[0][0]
    debut_raw = raw.split("-")[0]
    assert str(row.registration_debut)[:10].replace("-", "") == debut_raw
    slots = query(
        db,
        "SELECT COUNT(*) FROM recruitment_slot WHERE kairos_session_id = :s"
        " AND slot_key LIKE 'info:%'",
        s=row.id,
    )
    assert slots[0][0] == 0  # no meeting anyone could book

    run = run_checks(db, dt.date(2025, 12, 1))
    missing = {
        f.detail_key
        for f in run.flags
        if f.rule_id == "missing_kairos_field" and f.kairos_session_id == row.id
    }
    assert missing and all("objectif" in k and "contenu" in k for k in missing)
    flagged = [f for f in run.flags if f.kairos_session_id == row.id]
    assert all(f.departement == row.place_departement for f in flagged)
