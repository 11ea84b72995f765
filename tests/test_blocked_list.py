"""The blocked list, right in both directions (docs/quality-checks.md, "Recruiting on D",
"Open on D", "Blocked, or KAIROS not checked"), on SQLite and PostgreSQL.

Before: sessions recruiting through KAIROS appointments showed as blocked (RDVI ranges and
candidature windows were only seen once a candidate was booked), while 0-place information
meetings, closed KAIROS modalities and sessions with no recruitment state passed.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from quality_data import AS_OF, OF_A, QualityData, days
from test_quality_checks import flagged

from pipelines.kairos_exports import ingest_export
from quality_checks.rules import CheckSettings
from quality_checks.runner import run_checks

HEADLINE = "no_open_recruitment_modality"
MODALITIES_HEADER = (
    "dc_numeroicsession|dc_siretformateur|type_modalite|date_debut|date_fin|nb_places|statut"
)


@pytest.fixture
def data(db_url: str) -> Any:
    db = QualityData(db_url)
    yield db
    db.dispose()


def _fr(day: dt.date) -> str:
    return day.strftime("%d/%m/%Y")


def test_what_counts_as_an_open_modality(data: QualityData) -> None:
    s, slot = data.session, data.slot
    slot(s(carif_session_numero="ico_zero_places"), "ico", starts_on=days(5), capacity=0)
    slot(s(carif_session_numero="ico_places_unknown"), "ico", starts_on=days(5), capacity=None)
    slot(s(carif_session_numero="ico_today"), "ico", starts_on=AS_OF, ends_on=AS_OF)
    slot(s(carif_session_numero="ico_past"), "ico", starts_on=days(-3), ends_on=days(-3))
    # A month-precision meeting (AAAAMM00): its month is not over.
    slot(s(carif_session_numero="ico_this_month"), "ico", starts_on=days(-10), ends_on=days(15))
    for status, name in (("closed", "rdvi_closed"), ("cancelled", "rdvi_cancelled")):
        slot(
            s(carif_session_numero=name), "rdvi", starts_on=days(-5), ends_on=days(5), status=status
        )
    slot(
        s(carif_session_numero="rdvi_open"),
        "rdvi",
        starts_on=days(-5),
        ends_on=days(5),
        status="open",
    )
    slot(s(carif_session_numero="rdvi_later"), "rdvi", starts_on=days(3), ends_on=days(9))
    slot(s(carif_session_numero="rdvi_over"), "rdvi", starts_on=days(-9), ends_on=days(-1))
    slot(s(carif_session_numero="cand_open"), "candidature", starts_on=days(-5), ends_on=days(5))
    slot(s(carif_session_numero="cand_not_yet"), "candidature", starts_on=days(1), ends_on=days(9))
    slot(
        s(carif_session_numero="cand_closed"),
        "candidature",
        starts_on=days(-5),
        ends_on=days(5),
        status="closed",
    )
    slot(s(carif_session_numero="cand_zero"), "candidature", starts_on=days(-5), capacity=0)

    run = run_checks(data.url, AS_OF)

    assert set(flagged(run, HEADLINE)) == {
        "ico_zero_places",
        "ico_past",
        "rdvi_closed",
        "rdvi_cancelled",
        "rdvi_over",
        "cand_not_yet",
        "cand_closed",
        "cand_zero",
    }


def test_when_a_session_is_recruiting(data: QualityData) -> None:
    s = data.session
    reg = dict(debut=days(-5), registration_raw="x")
    s(carif_session_numero="started_registration_open", registration_debut=days(-30),
      registration_fin=days(10), **reg)  # fmt: skip
    s(carif_session_numero="started_registration_no_end", registration_debut=days(-30), **reg)
    s(carif_session_numero="started_registration_over", registration_debut=days(-30),
      registration_fin=days(-1), **reg)  # fmt: skip
    s(carif_session_numero="started_registration_ended_session", registration_debut=days(-30),
      registration_fin=days(10), fin=days(-1), debut=days(-60), registration_raw="x")  # fmt: skip
    s(carif_session_numero="started_no_registration", debut=days(-5))
    s(carif_session_numero="not_started", debut=days(5))
    s(carif_session_numero="no_state", debut=days(5), etat_recrutement=None)
    s(carif_session_numero="no_state_started", debut=days(-5), etat_recrutement=None)
    s(carif_session_numero="closed_state", debut=days(5), etat_recrutement=2)
    s(carif_session_numero="suspended_state", debut=days(5), etat_recrutement=3)

    run = run_checks(data.url, AS_OF)

    assert set(flagged(run, HEADLINE)) == {
        "started_registration_open",
        "started_registration_no_end",
        "not_started",
    }
    assert run.sessions_recruiting == 3
    # No state: not recruiting for the headline, flagged on its own for the OF responsable.
    assert flagged(run, "missing_recruitment_state") == {"no_state": {"no_open_modality"}}
    [flag] = [f for f in run.flags if f.rule_id == "missing_recruitment_state"]
    assert flag.severity == "warning" and "outil du CARIF-OREF" in flag.message


def _modalities(path: Path, *lines: str) -> Path:
    path.write_text("\n".join([MODALITIES_HEADER, *lines]) + "\n", encoding="utf-8")
    return path


def _slots(url: str, session_id: int) -> list[Any]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(
                conn.execute(
                    sa.text(
                        "SELECT slot_key, status, closed_at, capacity FROM recruitment_slot"
                        " WHERE kairos_session_id = :s AND origin = 'kairos' ORDER BY slot_key"
                    ),
                    {"s": session_id},
                )
            )
    finally:
        engine.dispose()


def test_rdvi_only_in_kairos_before_and_after_the_modalities_export(
    data: QualityData, tmp_path: Path
) -> None:
    s = data.session
    rdvi_only = s(carif_session_numero="S-RDVI")  # recruits by RDVI, entered in KAIROS only
    s(carif_session_numero="S-NOTHING")  # nothing anywhere
    s(carif_session_numero="S-OTHER-SOURCE", source="other")  # a source no export covered
    ico_twice = s(carif_session_numero="S-ICO-TWICE")
    data.slot(ico_twice, "ico", origin="lheo", starts_on=days(-3), ends_on=days(-3))

    before = run_checks(data.url, AS_OF)
    assert flagged(before, HEADLINE) == {
        "S-RDVI": {"kairos_not_checked"},
        "S-NOTHING": {"kairos_not_checked"},
        "S-OTHER-SOURCE": {"kairos_not_checked"},
        "S-ICO-TWICE": {"kairos_not_checked"},
    }
    assert (before.sessions_blocked, before.sessions_unverified) == (0, 4)

    export = _modalities(
        tmp_path / "modalites.csv",
        f"S-RDVI|{OF_A}|RDVI|{_fr(days(-10))}|{_fr(days(20))}|8|OUVERT",
        f"S-ICO-TWICE|{OF_A}|ICO|{_fr(days(-3))}||12|OUVERT",  # the offer's ICO, seen in KAIROS
        f"S-UNKNOWN|{OF_A}|CANDIDATURE|{_fr(days(-1))}|{_fr(days(9))}||OUVERT",
    )
    result = ingest_export(export, kind="modalities", db_url=data.url, as_of=AS_OF)
    assert (
        result.counts["linked"],
        result.counts["unmatched"],
        result.counts["slots_inserted"],
    ) == (2, 1, 2)
    assert result.counts["sources_covered"] == 1

    after = run_checks(data.url, AS_OF)
    assert flagged(after, HEADLINE) == {
        "S-NOTHING": {"blocked"},  # KAIROS checked: nothing there either
        "S-ICO-TWICE": {"blocked"},
        "S-OTHER-SOURCE": {"kairos_not_checked"},  # its source was not covered
    }
    assert (after.sessions_blocked, after.sessions_unverified) == (2, 1)
    [twice] = [
        f for f in after.flags if f.rule_id == HEADLINE and f.carif_session_numero == "S-ICO-TWICE"
    ]
    assert twice.detail_count == 1  # the same ICO in the offer and in KAIROS counts once
    assert "Bloquée" in twice.message
    engine = sa.create_engine(data.url)
    with engine.connect() as conn:
        kept = conn.execute(
            sa.text("SELECT carif_session_numero, modality FROM kairos_modality_unmatched")
        ).all()
    engine.dispose()
    assert [tuple(r) for r in kept] == [("S-UNKNOWN", "candidature")]

    # Three days later the export is too old to verify anything: back to "non vérifié".
    later = run_checks(data.url, days(3), settings=CheckSettings(kairos_max_age_days=2))
    assert flagged(later, HEADLINE)["S-NOTHING"] == {"kairos_not_checked"}
    assert "S-RDVI" not in flagged(later, HEADLINE)

    # A newer file replaces the session's KAIROS modalities: the RDVI range is gone (closed,
    # history kept), a closed window does not count.
    newer = _modalities(
        tmp_path / "modalites-2.csv",
        f"S-RDVI|{OF_A}|CANDIDATURE|{_fr(days(-10))}|{_fr(days(20))}|8|FERME",
    )
    again = ingest_export(newer, kind="modalities", db_url=data.url, as_of=AS_OF)
    assert again.counts["slots_closed"] == 2  # S-RDVI's range, and S-ICO-TWICE's (covered source)
    slots = _slots(data.url, rdvi_only)
    assert [(r.slot_key.split(":")[1], r.status, r.closed_at is None) for r in slots] == [
        ("candidature", "closed", True),
        ("rdvi", "open", False),
    ]
    final = run_checks(data.url, AS_OF)
    assert flagged(final, HEADLINE)["S-RDVI"] == {"blocked"}


def test_modalities_export_lines_are_checked(data: QualityData, tmp_path: Path) -> None:
    data.session(carif_session_numero="S-1")
    export = _modalities(
        tmp_path / "bad.csv",
        f"S-1|{OF_A}|VISIO|{_fr(days(1))}||3|OUVERT",
        f"S-1|{OF_A}|ICO|{_fr(days(1))}||trois|OUVERT",
        f"S-1|{OF_A}|ICO|31/02/2026||3|OUVERT",
        f"S-1|{OF_A}|RDVI|{_fr(days(9))}|{_fr(days(1))}|3|OUVERT",
        f"S-1|123|ICO|{_fr(days(1))}||3|OUVERT",
        f"S-1|{OF_A}|ICO|{_fr(days(1))}||3|PEUT-ETRE",
        f"S-1|{OF_A}|ICO|{_fr(days(1))}||3|OUVERT",
    )
    result = ingest_export(export, kind="modalities", db_url=data.url, as_of=AS_OF)
    assert (result.counts["quarantined"], result.counts["slots_inserted"]) == (6, 1)
    engine = sa.create_engine(data.url)
    with engine.connect() as conn:
        paths = [
            r[0]
            for r in conn.execute(
                sa.text("SELECT path FROM quarantine WHERE run_id = :r ORDER BY line"),
                {"r": result.run_id},
            )
        ]
    engine.dispose()
    assert paths == [
        "type_modalite",
        "nb_places",
        "date_debut",
        "date_fin",
        "dc_siretformateur",
        "statut",
    ]


def test_export_sessions_as_of_lists_open_slots_and_every_slots_state(
    data: QualityData,
) -> None:
    import io
    import json

    from pipelines.export_sessions import export_sessions

    session = data.session(carif_session_numero="S-EXPORT")
    slot = data.slot
    slot(session, "ico", origin="lheo", slot_key="a-open", starts_on=days(2), ends_on=days(2))
    slot(session, "ico", origin="lheo", slot_key="b-past", starts_on=days(-2), ends_on=days(-2))
    slot(session, "ico", origin="lheo", slot_key="c-zero", starts_on=days(2), capacity=0)
    slot(session, "other", origin="lheo", slot_key="d-test", starts_on=days(2))
    slot(session, "rdvi", slot_key="e-cancelled", starts_on=days(2), status="cancelled")
    slot(session, "candidature", slot_key="f-later", starts_on=days(2), ends_on=days(9))
    out = io.StringIO()
    assert export_sessions(out, db_url=data.url, as_of=AS_OF) == 1
    [exported] = json.loads(out.getvalue())
    states = {s["slot_key"]: s["state"] for s in exported["slots"]}
    assert states == {
        "a-open": "open",
        "b-past": "past",
        "c-zero": "no_places",
        "d-test": "not_a_kairos_modality",
        "e-cancelled": "cancelled",
        "f-later": "not_yet_open",
    }
    assert [s["slot_key"] for s in exported["open_slots"]] == ["a-open"]
    # On another day, another answer: the past meeting was open then.
    out = io.StringIO()
    export_sessions(out, db_url=data.url, as_of=days(-3))
    [earlier] = json.loads(out.getvalue())
    assert {s["slot_key"] for s in earlier["open_slots"]} == {"a-open", "b-past"}


def test_the_report_says_how_many_kairos_lines_match_no_session(
    data: QualityData, tmp_path: Path
) -> None:
    import lxml.html

    from quality_checks.report import build_report

    data.session(carif_session_numero="S-KNOWN")
    before = build_report(data.url, AS_OF, tmp_path / "before")
    page = lxml.html.parse(str(before.html_path)).getroot()
    assert "Aucun export KAIROS" in page.get_element_by_id("modalites-kairos").text_content()
    export = _modalities(
        tmp_path / "modalites.csv",
        f"S-KNOWN|{OF_A}|ICO|{_fr(days(3))}||10|OUVERT",
        f"S-GONE|{OF_A}|ICO|{_fr(days(3))}||10|OUVERT",
        f"S-GONE-2|{OF_A}|RDVI|{_fr(days(3))}|{_fr(days(9))}||OUVERT",
    )
    ingest_export(export, kind="modalities", db_url=data.url, as_of=AS_OF)
    after = build_report(data.url, AS_OF, tmp_path / "after")
    page = lxml.html.parse(str(after.html_path)).getroot()
    note = " ".join(page.get_element_by_id("modalites-kairos").text_content().split())
    assert "2 ligne(s) ne correspondent à aucune session" in note
