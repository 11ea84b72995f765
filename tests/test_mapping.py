"""KAIROS mapping rules (transforms/kairos_mapping.py) on records built in Python.

Split rules and guichet unique: DOMAIN.md "Mandataire and dispensateur" (Normandie deck
"SMF et KAIROS", obligations deck). Slots: DOMAIN.md "Recruitment modalities" and the
KAIROS screen 5 row of the Normandie deck.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date

import pytest

from core.config import GuichetUniqueMatcher, SourceConfig
from transforms.kairos_mapping import (
    guichet_unique_matcher,
    map_formation,
    siret_is_valid,
)
from transforms.lheo_dates import parse_lheo_date
from transforms.records import (
    Action,
    Address,
    Coordinates,
    Extra,
    Formateur,
    Formation,
    Funder,
    Organisation,
    Period,
    Recruitment,
    Session,
    TrainingPlace,
)

# Luhn-valid SIRETs (SIREN and SIRET both pass python-stdnum).
MANDATAIRE = "73282932000074"
OF_A = "35600000000048"  # La Poste head office: Luhn-valid
OF_B = "44229377500031"
OF_C = "40483304800022"
PLAIN = SourceConfig(name="test")


def _d(raw: str) -> Period:
    return Period(parse_lheo_date(raw[:8]), parse_lheo_date(raw[9:]))


def place(city: str, siret: str | None = None, postal: str = "14000") -> TrainingPlace:
    address = Address(lines=(f"1 rue de {city}",), postal_code=postal, city=city, departement="14")
    return TrainingPlace(coordinates=Coordinates(nom=f"Site {city}", address=address), siret=siret)


def session(numero: str | None = "S1", dates: str = "20260105-20260630", **kw: object) -> Session:
    return Session(numero=numero, period=_d(dates), registration_address=None, **kw)  # type: ignore[arg-type]


def action(
    numero: str | None = "A1",
    *,
    formateurs: tuple[str, ...] = (),
    places: tuple[TrainingPlace, ...] = (),
    sessions: tuple[Session, ...] | None = None,
    **kw: object,
) -> Action:
    return Action(
        numero=numero,
        rythme="Temps plein",
        public_codes=(),
        modalites_entrees_sorties=0,
        sessions=sessions if sessions is not None else (session(),),
        places=places,
        formateurs=tuple(Formateur(s, f"OF {s[:4]}") for s in formateurs),
        funders=(Funder("2", 12), Funder("10", None)),
        hours_total=420,
        **kw,  # type: ignore[arg-type]
    )


def formation(
    *actions: Action, version: str = "2.3", mandataire: str = MANDATAIRE, **kw: object
) -> Formation:
    return Formation(
        numero="F1",
        lheo_version=version,  # type: ignore[arg-type]
        intitule="Titre professionnel Cuisinier",
        objectif="Devenir cuisinier",
        resultats_attendus=None,
        contenu="Modules",
        certifiante=True,
        formacodes=("42752", "42754"),
        rome_codes=(),
        nsf_codes=(),
        objectif_general=6,
        niveau_entree=None,
        niveau_sortie=None,
        responsable=Organisation(
            MANDATAIRE if mandataire is None else mandataire,
            "11755555555",
            "GRETA",
            "GRETA CALVADOS",
        ),
        actions=actions or (action(),),
        **kw,  # type: ignore[arg-type]
    )


def by_dispensateur(f: Formation, config: SourceConfig = PLAIN) -> dict[str, object]:
    return {row.dispensateur_siret: row for row in map_formation(f, config).sessions}


# ----------------------------------------------------------------------------- split rules


def test_without_formateur_the_responsable_is_the_dispensateur() -> None:
    rows = map_formation(formation(action(places=(place("Caen"),)), version="2.2"), PLAIN).sessions
    assert len(rows) == 1
    row = rows[0]
    assert row.dispensateur_siret == MANDATAIRE == row.mandataire_siret
    assert row.split_reason == "single"  # 2.2 has no SIRET-lieu-formation: nothing detached
    assert row.place_city == "Caen"
    assert row.dispensateur_raison_sociale == "GRETA CALVADOS"


def test_co_contracting_gives_one_session_per_dispensateur_siret() -> None:
    f = formation(action(formateurs=(OF_A, OF_B, OF_A)))  # OF_A twice: one KAIROS session
    rows = map_formation(f, PLAIN).sessions
    assert [r.dispensateur_siret for r in rows] == [OF_A, OF_B]
    assert {r.mandataire_siret for r in rows} == {MANDATAIRE}
    assert {r.split_reason for r in rows} == {"co_contracting"}
    assert {r.carif_session_numero for r in rows} == {"S1"}
    assert rows[0].content_hash != rows[1].content_hash


def test_place_with_siret_attaches_to_that_dispensateur_unmarked_place_to_every_formateur() -> None:
    f = formation(
        action(formateurs=(OF_A, OF_B), places=(place("Caen", OF_B), place("Lisieux", None)))
    )
    rows = by_dispensateur(f)
    places_a = json.loads(rows[OF_A].places_json)  # type: ignore[attr-defined]
    places_b = json.loads(rows[OF_B].places_json)  # type: ignore[attr-defined]
    assert [p["name"] for p in places_a] == ["Site Lisieux"]
    assert [p["name"] for p in places_b] == ["Site Caen", "Site Lisieux"]
    assert places_b[0]["attached_by"] == "siret" and places_b[1]["attached_by"] == "default"
    assert places_b[1]["detached"] is True
    assert rows[OF_B].place_city == "Caen"  # type: ignore[attr-defined]


def test_place_with_its_own_siret_makes_its_establishment_a_dispensateur() -> None:
    f = formation(action(formateurs=(OF_A,), places=(place("Caen", OF_C),)))
    rows = by_dispensateur(f)
    assert set(rows) == {OF_A, OF_C}
    assert {r.split_reason for r in rows.values()} == {"co_contracting"}  # type: ignore[attr-defined]


def test_no_formateur_and_only_sireted_places_leaves_the_responsable_out() -> None:
    rows = by_dispensateur(formation(action(places=(place("Caen", OF_C),))))
    assert set(rows) == {OF_C}
    assert rows[OF_C].split_reason == "single"  # type: ignore[attr-defined]
    assert rows[OF_C].mandataire_siret == MANDATAIRE  # type: ignore[attr-defined]


def test_place_without_siret_stays_with_its_dispensateur() -> None:
    rows = map_formation(
        formation(action(formateurs=(OF_A,), places=(place("Bayeux", None),))), PLAIN
    ).sessions
    assert len(rows) == 1
    assert rows[0].dispensateur_siret == OF_A
    # Its one place, without a SIRET of its own, is taken as its own site (test_split).
    assert rows[0].split_reason == "single"
    assert rows[0].place_city == "Bayeux"


# ----------------------------------------------------------------------------- guichet unique


AVENIR_EXTRA = Extra("programme", "#Avenir")


@pytest.mark.parametrize(
    ("matcher", "f"),
    [
        (
            GuichetUniqueMatcher("mandataire_siret", MANDATAIRE),
            formation(action(formateurs=(OF_A, OF_B))),
        ),
        (
            GuichetUniqueMatcher("action_numero_prefix", "AVN-"),
            formation(action("AVN-12", formateurs=(OF_A, OF_B))),
        ),
        (
            GuichetUniqueMatcher("extra", "#Avenir", "programme"),
            formation(action(formateurs=(OF_A, OF_B)), extras=(AVENIR_EXTRA,)),
        ),
        (
            GuichetUniqueMatcher("extra", "#Avenir", "programme"),
            formation(action(formateurs=(OF_A, OF_B), extras=(AVENIR_EXTRA,))),
        ),
    ],
    ids=["mandataire_siret", "action_numero_prefix", "extra_on_formation", "extra_on_action"],
)
def test_guichet_unique_keeps_everything_under_the_mandataire(
    matcher: GuichetUniqueMatcher, f: Formation
) -> None:
    config = SourceConfig(name="smf", guichet_unique=(matcher,))
    assert guichet_unique_matcher(f, f.actions[0], config.guichet_unique) == matcher
    rows = map_formation(f, config).sessions
    assert len(rows) == 1
    row = rows[0]
    assert row.dispensateur_siret == row.mandataire_siret == MANDATAIRE
    assert row.split_reason == "guichet_unique"
    places = json.loads(row.places_json)
    assert [(p["kind"], p["siret"], p["detached"]) for p in places] == [
        ("formateur", OF_A, True),
        ("formateur", OF_B, True),
    ]
    # Without the rule the same formation is split between co-contractors.
    assert len(map_formation(f, PLAIN).sessions) == 2


@pytest.mark.parametrize(
    "matcher",
    [
        GuichetUniqueMatcher("mandataire_siret", OF_C),
        GuichetUniqueMatcher("action_numero_prefix", "AVN-"),
        GuichetUniqueMatcher("extra", "#Avenir", "dispositif"),  # right value, wrong info
        GuichetUniqueMatcher("extra", "#Avenir2", "programme"),
    ],
)
def test_guichet_unique_non_matches(matcher: GuichetUniqueMatcher) -> None:
    f = formation(action("AF-1", formateurs=(OF_A, OF_B)), extras=(AVENIR_EXTRA,))
    assert guichet_unique_matcher(f, f.actions[0], (matcher,)) is None


# ----------------------------------------------------------------------------- SIRETs


@pytest.mark.parametrize(
    ("siret", "valid"),
    [
        (MANDATAIRE, True),
        ("35600000000048", True),  # La Poste head office
        ("35600000000001", True),  # La Poste establishment: digit sum multiple of 5, not Luhn
        ("35600000000002", False),
        ("73282932000079", False),  # bad Luhn
        ("00000000000000", False),  # Luhn-valid placeholder seen in real exports
        ("", False),
        ("7328293200007", False),
        ("7328293200007A", False),
    ],
)
def test_siret_validity(siret: str, valid: bool) -> None:
    assert siret_is_valid(siret) is valid


def test_invalid_sirets_never_crash_and_are_flagged() -> None:
    f = formation(
        action(formateurs=("00000000000000", "              ")), mandataire="12345678901234"
    )
    rows = by_dispensateur(f)
    assert set(rows) == {"00000000000000", ""}
    for row in rows.values():
        assert row.dispensateur_siret_valid is False  # type: ignore[attr-defined]
        assert row.mandataire_siret_valid is False  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- slots


def test_23_recrutement_modalities_become_slots() -> None:
    recrutements = (
        Recruitment(
            9,
            _d("20251201-20251201"),
            places=15,
            start_time="09:00",
            end_time="12:00",
            address=Address(lines=("2 rue X",), postal_code="14000", city="Caen"),
        ),
        Recruitment(8, _d("20251201-20251220")),
        Recruitment(7, _d("20251101-20251215"), places=20, remote=True),
        Recruitment(3, None, comment="dossier"),
        Recruitment(9, _d("20251201-20251201"), start_time="09:00"),  # same key: gets #2
    )
    f = formation(action(formateurs=(OF_A, OF_B), sessions=(session(recrutements=recrutements),)))
    slots = map_formation(f, PLAIN).slots
    assert len(slots) == 10  # five per KAIROS session, both co-contractors recruit
    mine = [s for s in slots if s.dispensateur_siret == OF_A]
    assert [s.modality for s in mine] == ["ico", "rdvi", "candidature", "other", "ico"]
    assert [s.modality_code for s in mine] == [9, 8, 7, 3, 9]
    ico = mine[0]
    assert (ico.starts_on, ico.ends_on, ico.capacity, ico.start_time, ico.city) == (
        "2025-12-01",
        "2025-12-01",
        15,
        "09:00",
        "Caen",
    )
    assert mine[2].remote is True
    keys = [s.slot_key for s in mine]
    assert len(set(keys)) == 5 and keys[4] == keys[0] + "#2"


def test_22_date_information_becomes_ico_slots_of_every_session() -> None:
    info = (parse_lheo_date("20251115"), parse_lheo_date("20251201"))
    a = action(
        sessions=(session("S1"), session("S2", "20260301-20260630")),
        information_dates=info,
        information_address=Address(lines=("Salle 3",), postal_code="76000", city="Rouen"),
    )
    slots = map_formation(formation(a, version="2.2"), PLAIN).slots
    assert sorted((s.carif_session_numero, s.starts_on) for s in slots) == [
        ("S1", "2025-11-15"),
        ("S1", "2025-12-01"),
        ("S2", "2025-11-15"),
        ("S2", "2025-12-01"),
    ]
    assert {s.modality for s in slots} == {"ico"} and {s.city for s in slots} == {"Rouen"}
    assert {s.modality_code for s in slots} == {None}


# ----------------------------------------------------------------------------- keys, dates, hash


def test_session_without_numero_gets_a_deterministic_derived_key() -> None:
    a = action(sessions=(session(None), session(None), session(None, "20260901-20261231")))
    rows = map_formation(formation(a), PLAIN).sessions
    keys = [r.carif_session_numero for r in rows]
    assert keys == ["~A1:20260105-20260630", "~A1:20260105-20260630#2", "~A1:20260901-20261231"]
    assert all(r.session_numero_derived for r in rows)
    assert keys == [r.carif_session_numero for r in map_formation(formation(a), PLAIN).sessions]


def test_dates_keep_precision_and_bounds() -> None:
    rows = map_formation(formation(action(sessions=(session(dates="20260300-20270000"),))), PLAIN)
    row = rows.sessions[0]
    assert (row.debut, row.debut_raw, row.debut_precision) == ("2026-03-01", "20260300", "month")
    assert (row.fin, row.fin_precision) == (date(2027, 12, 31).isoformat(), "year")


def test_screen_fields_and_funders() -> None:
    row = map_formation(formation(), PLAIN).sessions[0]
    assert row.main_formacode == "42752" and row.formacodes == "42752,42754"
    assert row.duration_hours == 420 and row.objectif_general == 6
    assert json.loads(row.funders_json) == [
        {"code": "2", "places": 12},
        {"code": "10", "places": None},
    ]
    assert row.funded_places_total == 12
    assert row.action_url is None


def test_action_url_is_the_first_url_of_the_action() -> None:
    urls = ("https://offre.example/a1", "https://autre.example/a1")
    f = formation(action(urls=urls))
    assert {row.action_url for row in map_formation(f, PLAIN).sessions} == {urls[0]}


def test_content_hash_changes_only_with_content() -> None:
    f = formation()
    first = map_formation(f, PLAIN).sessions[0]
    assert map_formation(f, PLAIN).sessions[0].content_hash == first.content_hash
    changed = replace(f, actions=(action(sessions=(session(etat_recrutement=2),)),))
    assert map_formation(changed, PLAIN).sessions[0].content_hash != first.content_hash
