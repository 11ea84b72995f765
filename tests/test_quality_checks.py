"""The quality rules (sql/checks, quality_checks/rules.yaml) on SQLite and PostgreSQL.

Each test inserts sessions that must and must not be flagged, including the boundaries
(ICO on the as-of date, window ending that day, started 3 vs 4 days ago…), runs every rule
through Great Expectations (`run_checks`) and looks at what one rule flagged. Session
numbers name the case, so a failure says which case broke.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections import defaultdict

import pytest
import sqlalchemy as sa
from quality_data import AS_OF, NOW, OF_A, OF_B, OF_C, QualityData, days
from typer.testing import CliRunner

from core.db import read_query
from pipelines.cli import app
from quality_checks.rules import (
    HEADLINE_RULE,
    RESULT_COLUMNS,
    CheckSettings,
    bind_parameters,
    load_rules,
)
from quality_checks.runner import CheckRun, run_checks


def flagged(run: CheckRun, rule_id: str) -> dict[str, set[str]]:
    """carif_session_numero → detail keys flagged by `rule_id`."""
    found: dict[str, set[str]] = defaultdict(set)
    for flag in run.flags:
        if flag.rule_id == rule_id:
            found[flag.carif_session_numero or ""].add(flag.detail_key)
    return dict(found)


@pytest.fixture
def data(db_url: str) -> QualityData:
    db = QualityData(db_url)
    yield db  # type: ignore[misc]
    db.dispose()


def test_registry_matches_sql_files_and_columns(data: QualityData) -> None:
    rules = load_rules()
    assert rules[0].id == "no_open_recruitment_modality"
    assert len(rules) == 14
    with data.engine.connect() as conn:
        for rule in rules:
            assert rule.message and rule.source and rule.acts_label
            assert "{" not in rule.sql().replace("{batch}", "")  # GX formats the query
            sql = rule.plain_sql()
            names = set(re.findall(r":(\w+)", sql))
            assert names <= set(bind_parameters(AS_OF)), rule.id
            params = {k: v for k, v in bind_parameters(AS_OF).items() if k in names}
            result = conn.execute(
                sa.text(sql).bindparams(
                    *(sa.bindparam(k, v, type_=sa.Date()) for k, v in params.items())
                )
            )
            assert tuple(result.keys()) == RESULT_COLUMNS, rule.id


def test_no_open_recruitment_modality_and_no_modality(data: QualityData) -> None:
    s = data.session
    data.slot(s(carif_session_numero="ico_today"), "ico", starts_on=AS_OF)
    data.slot(s(carif_session_numero="ico_yesterday"), "ico", starts_on=days(-1))
    s(carif_session_numero="none")
    data.slot(s(carif_session_numero="rdvi_ends_today"), "rdvi", starts_on=days(-10), ends_on=AS_OF)
    data.slot(s(carif_session_numero="rdvi_ended"), "rdvi", starts_on=days(-10), ends_on=days(-1))
    data.slot(s(carif_session_numero="rdvi_future"), "rdvi", starts_on=days(3), ends_on=days(9))
    cand = s(carif_session_numero="cand_ends_today")
    slot = data.slot(cand, "candidature", starts_on=days(-10), ends_on=AS_OF, capacity=2)
    data.enrolment(cand, "positionne", days(-2), slot_id=slot)
    full = s(carif_session_numero="cand_full")
    slot = data.slot(full, "candidature", starts_on=days(-10), ends_on=days(10), capacity=1)
    data.enrolment(full, "positionne", days(-2), slot_id=slot)
    data.slot(s(carif_session_numero="cand_unbounded"), "candidature", starts_on=None)
    data.slot(s(carif_session_numero="cand_future"), "candidature", starts_on=days(1))
    data.slot(s(carif_session_numero="other_only"), "other", starts_on=days(3))
    s(carif_session_numero="state_closed", etat_recrutement=2)
    s(carif_session_numero="state_suspended", etat_recrutement=3)
    s(carif_session_numero="fixed_starts_today", debut=AS_OF)
    s(carif_session_numero="fixed_starts_tomorrow", debut=days(1))
    s(carif_session_numero="perm_running", modalites_entrees_sorties=1, debut=days(-100))
    s(
        carif_session_numero="perm_ends_today",
        modalites_entrees_sorties=1,
        debut=days(-9),
        fin=AS_OF,
    )
    s(carif_session_numero="perm_ended", modalites_entrees_sorties=1, debut=days(-9), fin=days(-1))
    s(carif_session_numero="vanished", closed_at=dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    closed_slot = s(carif_session_numero="slot_vanished")
    data.slot(closed_slot, "ico", starts_on=days(4), closed_at=dt.datetime(2026, 3, 1))

    run = run_checks(data.url, AS_OF)

    blocked = set(flagged(run, "no_open_recruitment_modality"))
    assert blocked == {
        "ico_yesterday",
        "none",
        "rdvi_ended",
        "cand_future",
        "other_only",
        "fixed_starts_tomorrow",
        "perm_running",
        "perm_ends_today",
        "slot_vanished",
    }
    never = set(flagged(run, "no_recruitment_modality"))
    assert never == {
        "none",
        "other_only",
        "fixed_starts_tomorrow",
        "perm_running",
        "perm_ends_today",
        "slot_vanished",
    }
    # No KAIROS modalities export was ever loaded: none of them is "bloquée" yet.
    assert (run.sessions_blocked, run.sessions_unverified) == (0, len(blocked))
    messages = {
        f.carif_session_numero: f.message
        for f in run.flags
        if f.rule_id == "no_open_recruitment_modality"
    }
    assert "Aucune modalité visible dans l'offre — KAIROS non vérifié" in messages["none"]
    assert "1 modalité(s) saisie(s), la dernière le 15/03/2026" in messages["ico_yesterday"]
    # 19 sessions synchronised (the vanished one is not), recruiting = not closed/suspended,
    # not started (fixed) or not ended (permanent).
    assert run.sessions_current == 19
    assert run.sessions_recruiting == 15


def test_recruiting_without_places(data: QualityData) -> None:
    s = data.session
    s(carif_session_numero="zero_places", funded_places_total=0, funded_places_lheo=0)
    s(carif_session_numero="null_places", funded_places_total=None, funded_places_lheo=None)
    s(
        carif_session_numero="zero_not_recruiting",
        funded_places_total=0,
        funded_places_lheo=0,
        etat_recrutement=2,
    )
    # The second dispensateur of a shared LHEO session: its row counts 0 of the 12 places
    # (the first one's counts them), the LHEO session has places.
    s(carif_session_numero="shared_second", funded_places_total=0, funded_places_shared_by=2)
    full = s(carif_session_numero="all_full")
    for capacity in (1, 2):
        slot = data.slot(full, "ico", starts_on=days(3 + capacity), capacity=capacity)
        for _ in range(capacity):
            data.enrolment(full, "positionne", days(-1), slot_id=slot)
    room = s(carif_session_numero="room_left")
    slot = data.slot(room, "ico", starts_on=days(4), capacity=3)
    data.enrolment(room, "positionne", days(-1), slot_id=slot)
    data.enrolment(room, "positionne", days(-1), slot_id=slot)
    one_open = s(carif_session_numero="one_unlimited")
    slot = data.slot(one_open, "ico", starts_on=days(4), capacity=1)
    data.enrolment(one_open, "positionne", days(-1), slot_id=slot)
    data.slot(one_open, "rdvi", starts_on=days(4), ends_on=days(8), capacity=None)

    run = run_checks(data.url, AS_OF)

    assert flagged(run, "recruiting_without_places") == {
        "zero_places": {"no_funded_place"},
        "null_places": {"no_funded_place"},
        "all_full": {"slots_full"},
    }


def test_presence_not_entered_after_more_than_7_days(data: QualityData) -> None:
    s = data.session
    late = s(carif_session_numero="ico_8_days_ago")
    data.slot(late, "ico", slot_key="ico-a", starts_on=days(-8))
    data.slot(late, "ico", slot_key="ico-b", starts_on=days(4))
    data.enrolment(late, "positionne", days(-20), slot_key="ico-a")
    data.enrolment(late, "positionne", days(-20), slot_key="ico-a")
    data.enrolment(late, "present", days(-8), slot_key="ico-a")
    data.enrolment(late, "positionne", days(-1), slot_key="ico-b")  # ICO still to come
    boundary = s(carif_session_numero="ico_7_days_ago")
    data.slot(boundary, "ico", slot_key="ico-c", starts_on=days(-7))
    data.enrolment(boundary, "positionne", days(-20), slot_key="ico-c")
    rdvi = s(carif_session_numero="rdvi_range_ended")
    data.slot(rdvi, "rdvi", slot_key="r", starts_on=days(-30), ends_on=days(-9))
    data.enrolment(rdvi, "positionne", days(-29), slot_key="r")
    running = s(carif_session_numero="rdvi_range_recent")
    data.slot(running, "rdvi", slot_key="r2", starts_on=days(-30), ends_on=days(-2))
    data.enrolment(running, "positionne", days(-29), slot_key="r2")
    done = s(carif_session_numero="all_entered")
    data.slot(done, "ico", slot_key="ico-d", starts_on=days(-30))
    data.enrolment(done, "absent", days(-30), slot_key="ico-d")
    data.enrolment(done, "non_retenu", days(-29), slot_key="ico-d")

    run = run_checks(data.url, AS_OF)

    assert flagged(run, "presence_not_entered") == {
        "ico_8_days_ago": {"ico:ico-a"},
        "rdvi_range_ended": {"rdvi:r"},
    }
    flag = next(
        f
        for f in run.flags
        if f.carif_session_numero == "ico_8_days_ago" and f.rule_id == "presence_not_entered"
    )
    assert flag.detail_count == 2
    assert "2 candidat(s) sans présence saisie (information collective du 08/03/2026)" in (
        flag.message
    )


def test_result_not_entered_at_the_end_of_recruitment(data: QualityData) -> None:
    """FAQ Occitanie 3, 21, 22: the result is due at the end of the recruitment, i.e. when
    the session starts within 7 days or has started — not 15 days after the meeting."""
    s = data.session
    data.enrolment(s(carif_session_numero="starts_in_7_days", debut=days(7)), "present", days(-1))
    data.enrolment(s(carif_session_numero="starts_in_8_days", debut=days(8)), "present", days(-40))
    data.enrolment(s(carif_session_numero="started", debut=days(-5)), "present", days(-20))
    data.enrolment(s(carif_session_numero="retenu", debut=days(-5)), "retenu", days(-20))
    data.enrolment(  # the training plan's own start decides
        s(carif_session_numero="own_start_soon", debut=days(60)),
        "present",
        days(-1),
        planned_start=days(3),
    )
    perm = dict(modalites_entrees_sorties=1, debut=days(-90), fin=days(200))
    data.enrolment(s(carif_session_numero="perm_present_8_days", **perm), "present", days(-8))
    data.enrolment(s(carif_session_numero="perm_present_7_days", **perm), "present", days(-7))

    run = run_checks(data.url, AS_OF)

    assert set(flagged(run, "result_not_entered")) == {
        "starts_in_7_days",
        "started",
        "own_start_soon",
        "perm_present_8_days",
    }
    later = run_checks(data.url, AS_OF, settings=CheckSettings(result_days_before_start=8))
    assert "starts_in_8_days" in flagged(later, "result_not_entered")


def test_entry_not_declared_within_three_days(data: QualityData) -> None:
    s = data.session
    data.enrolment(
        s(carif_session_numero="started_4_days_ago", debut=days(-4)), "inscrit", days(-10)
    )
    data.enrolment(
        s(carif_session_numero="started_3_days_ago", debut=days(-3)), "inscrit", days(-10)
    )
    data.enrolment(s(carif_session_numero="entry_declared", debut=days(-30)), "entre", days(-30))
    data.enrolment(
        s(carif_session_numero="absent_at_entry", debut=days(-30)), "absent_entree", days(-30)
    )
    perm = s(carif_session_numero="permanent_planned", modalites_entrees_sorties=1, debut=days(-90))
    data.enrolment(perm, "inscrit", days(-10), planned_start=days(-2))
    late = s(carif_session_numero="permanent_late", modalites_entrees_sorties=1, debut=days(-90))
    data.enrolment(late, "inscrit", days(-10), planned_start=days(-5))

    run = run_checks(data.url, AS_OF)

    assert set(flagged(run, "entry_not_declared")) == {"started_4_days_ago", "permanent_late"}
    flag = next(
        f
        for f in run.flags
        if f.rule_id == "entry_not_declared" and f.carif_session_numero == "started_4_days_ago"
    )
    assert flag.severity == "error" and "2019-1386" in flag.message


def test_dispensateur_without_kairos_account(data: QualityData) -> None:
    s = data.session
    s(carif_session_numero="a_valid", dispensateur_siret=OF_A)
    s(carif_session_numero="b_expired", dispensateur_siret=OF_B)
    s(carif_session_numero="c_unknown", dispensateur_siret=OF_C)
    s(carif_session_numero="c_ended", dispensateur_siret=OF_C, debut=days(-60), fin=days(-1))

    before = run_checks(data.url, AS_OF)
    assert flagged(before, "dispensateur_without_kairos_account") == {}  # no list loaded yet

    data.adherent(OF_A, days(-365), AS_OF)  # ends on the as-of date: still valid
    data.adherent(OF_B, days(-365), days(-1))
    run = run_checks(data.url, AS_OF)
    assert flagged(run, "dispensateur_without_kairos_account") == {
        "b_expired": {"convention_not_valid"},
        "c_unknown": {"no_account"},
    }
    later = run_checks(data.url, days(1))
    assert "a_valid" in flagged(later, "dispensateur_without_kairos_account")


def test_invalid_siret(data: QualityData) -> None:
    s = data.session
    s(
        carif_session_numero="bad_disp",
        dispensateur_siret="00000000000000",
        dispensateur_siret_valid=False,
    )
    s(
        carif_session_numero="bad_both",
        mandataire_siret="",
        mandataire_siret_valid=False,
        dispensateur_siret="123",
        dispensateur_siret_valid=False,
    )
    s(
        carif_session_numero="bad_but_ended",
        dispensateur_siret="1",
        dispensateur_siret_valid=False,
        debut=days(-90),
        fin=days(-1),
    )
    s(carif_session_numero="good")

    run = run_checks(data.url, AS_OF)

    assert flagged(run, "invalid_siret") == {
        "bad_disp": {"dispensateur"},
        "bad_both": {"dispensateur", "mandataire"},
    }
    siret_expectations = [
        e
        for e in run.expectations
        if e.table == "kairos_session" and e.column == "dispensateur_siret"
    ]
    assert siret_expectations and not siret_expectations[0].success
    # '1' and '123' fail the format; the all-zero SIRET has the format but not the key.
    assert siret_expectations[0].unexpected_count == 2


def test_missing_kairos_field(data: QualityData) -> None:
    s = data.session
    s(carif_session_numero="complete")
    s(carif_session_numero="no_formacode_content", main_formacode=None, contenu="   ")
    s(
        carif_session_numero="no_place_no_duration",
        place_city=None,
        place_postal_code="",
        duration_hours=0,
    )
    s(carif_session_numero="no_dates", debut=None, fin=None, funders_json="[]")
    s(carif_session_numero="ended_incomplete", objectif=None, debut=days(-50), fin=days(-1))

    run = run_checks(data.url, AS_OF)

    assert flagged(run, "missing_kairos_field") == {
        "no_formacode_content": {"formacode,contenu,"},
        "no_place_no_duration": {"duree,lieu,"},
        "no_dates": {"debut,fin,financeur,"},
    }
    message = next(
        f.message
        for f in run.flags
        if f.carif_session_numero == "no_dates" and f.rule_id == "missing_kairos_field"
    )
    assert "date de début, date de fin, financeur" in message


def test_inconsistent_dates(data: QualityData) -> None:
    s = data.session
    s(carif_session_numero="end_before_start", debut=days(40), fin=days(20))
    fixed = s(carif_session_numero="ico_after_start", debut=days(10))
    data.slot(fixed, "ico", slot_key="late", starts_on=days(11))
    same_day = s(carif_session_numero="ico_on_start_day", debut=days(10))
    data.slot(same_day, "ico", slot_key="ok", starts_on=days(10))
    perm = s(
        carif_session_numero="perm_ico_after_start",
        modalites_entrees_sorties=1,
        debut=days(-10),
        fin=days(100),
    )
    data.slot(perm, "ico", slot_key="ok", starts_on=days(11))
    after = s(
        carif_session_numero="slot_after_end",
        modalites_entrees_sorties=1,
        debut=days(-10),
        fin=days(20),
    )
    data.slot(after, "rdvi", slot_key="r", starts_on=days(21), ends_on=days(25))
    reversed_ = s(carif_session_numero="slot_reversed")
    data.slot(reversed_, "candidature", slot_key="c", starts_on=days(5), ends_on=days(2))

    run = run_checks(data.url, AS_OF)

    assert flagged(run, "inconsistent_dates") == {
        "end_before_start": {"end_before_start"},
        "ico_after_start": {"ico_after_start:ico:late"},
        "slot_after_end": {"slot_after_end:rdvi:r"},
        "slot_reversed": {"slot_reversed:candidature:c"},
    }
    # GX's column-pair expectation sees the reversed session and the reversed slot too.
    pairs = {(e.table, e.success) for e in run.expectations if "pair" in e.expectation}
    assert pairs == {("kairos_session", False), ("recruitment_slot", False)}


def test_past_market_recruiting(data: QualityData) -> None:
    s = data.session
    gu = {"split_reason": "guichet_unique", "modalites_entrees_sorties": 1, "fin": days(60)}
    s(carif_session_numero="gu_2025_open", debut=dt.date(2025, 9, 1), **gu)
    s(carif_session_numero="gu_2026_open", debut=dt.date(2026, 1, 1), **gu)
    s(
        carif_session_numero="single_2025_open",
        debut=dt.date(2025, 9, 1),
        modalites_entrees_sorties=1,
        fin=days(60),
    )
    closed = s(
        carif_session_numero="gu_2025_closed_with_ico",
        debut=dt.date(2025, 9, 1),
        **{**gu, "etat_recrutement": 2},
    )
    data.slot(closed, "ico", starts_on=days(2))
    s(
        carif_session_numero="gu_2025_closed",
        debut=dt.date(2025, 9, 1),
        **{**gu, "etat_recrutement": 2},
    )

    run = run_checks(data.url, AS_OF)

    assert set(flagged(run, "past_market_recruiting")) == {
        "gu_2025_open",
        "gu_2025_closed_with_ico",
    }


def test_single_session_several_places(data: QualityData) -> None:
    s = data.session
    for siret_ in (OF_A, OF_B):
        s(
            carif_action_numero="A-co",
            carif_session_numero="co_one_session",
            dispensateur_siret=siret_,
            split_reason="co_contracting",
        )
    two_places = '[{"kind":"lieu","name":"Caen"},{"kind":"lieu","name":"Lisieux"}]'
    s(carif_action_numero="A-places", carif_session_numero="two_places", places_json=two_places)
    s(carif_action_numero="A-ok", carif_session_numero="ok_1")
    s(carif_action_numero="A-ok", carif_session_numero="ok_2", dispensateur_siret=OF_B)
    s(
        carif_action_numero="A-gu",
        carif_session_numero="gu_places",
        places_json=two_places,
        split_reason="guichet_unique",
    )

    run = run_checks(data.url, AS_OF)

    found = [
        (f.carif_session_numero, f.dispensateur_siret, f.detail_key)
        for f in run.flags
        if f.rule_id == "single_session_several_places"
    ]
    assert sorted(found) == sorted(
        [
            ("co_one_session", OF_A, "several_dispensateurs"),
            ("co_one_session", OF_B, "several_dispensateurs"),
            ("two_places", OF_A, "several_places"),
        ]
    )


def test_flags_are_stored_and_new_and_resolved_are_queries(data: QualityData) -> None:
    s = data.session
    fixed_later = s(carif_session_numero="fixed_later")  # blocked both days, then fixed
    s(carif_session_numero="always_blocked")
    first = run_checks(data.url, AS_OF)
    data.slot(fixed_later, "ico", starts_on=days(5))
    s(carif_session_numero="new_one")
    second = run_checks(data.url, days(1))

    with data.engine.connect() as conn:
        stored = conn.execute(
            sa.text(
                "SELECT rule_id, carif_session_numero, as_of FROM quality_check_result "
                "WHERE check_run_id = :id"
            ),
            {"id": second.id},
        ).all()
        assert len(stored) == len(second.flags)
        assert {str(r.as_of)[:10] for r in stored} == {days(1).isoformat()}
        params = {"run_id": second.id, "previous_run_id": first.id}
        new = conn.execute(sa.text(read_query("queries/quality_new_flags.sql")), params).all()
        resolved = conn.execute(
            sa.text(read_query("queries/quality_resolved_flags.sql")), params
        ).all()
        previous = conn.execute(
            sa.text(read_query("queries/quality_previous_run.sql")),
            {"scope": "", "as_of": days(1)},
        ).one()
        status = conn.execute(
            sa.text("SELECT status, run_kind FROM run_ledger WHERE id = :id"),
            {"id": second.run_ledger_id},
        ).one()
    headline = "no_open_recruitment_modality"
    assert {(r.rule_id, r.carif_session_numero) for r in new if r.rule_id == headline} == {
        (headline, "new_one")
    }
    assert {(r.rule_id, r.carif_session_numero) for r in resolved if r.rule_id == headline} == {
        (headline, "fixed_later")
    }
    assert previous.id == first.id
    assert tuple(status) == ("succeeded", "quality_check")


def test_source_scope_keeps_only_that_source(data: QualityData) -> None:
    data.session(carif_session_numero="mine", source="smf-normandie")
    data.session(carif_session_numero="theirs", source="sigma-occitanie")
    run = run_checks(data.url, AS_OF, source="smf-normandie")
    assert {f.source for f in run.flags} == {"smf-normandie"}
    assert run.sessions_current == 1


def test_check_cli_json(data: QualityData) -> None:
    data.session(carif_session_numero="blocked")
    result = CliRunner().invoke(
        app, ["check", "--db", data.url, "--as-of", AS_OF.isoformat(), "--format", "json"]
    )
    assert result.exit_code == 0, result.output  # flags are findings, not a failure
    flags = json.loads(result.stdout)
    assert flags and {"rule", "severity", "carif_session", "dispensateur_siret", "message"} <= set(
        flags[0]
    )
    assert flags[0]["carif_session"] == "blocked"
    text_result = CliRunner().invoke(app, ["check", "--db", data.url, "--as-of", AS_OF.isoformat()])
    assert "no_open_recruitment_modality" in text_result.stdout
    total = len(flags)
    assert total >= 2
    short = CliRunner().invoke(
        app, ["check", "--db", data.url, "--as-of", AS_OF.isoformat(), "--list", "1"]
    )
    flag_lines = [line for line in short.stdout.splitlines() if "\tblocked\t" in line]
    assert len(flag_lines) == 1  # a million flags are never dumped on a terminal
    assert f"{total} flags (" in short.stdout and "more flags" in short.stdout
    bad = CliRunner().invoke(app, ["check", "--db", data.url, "--as-of", "16/03/2026"])
    assert bad.exit_code == 2


def test_a_killed_check_run_is_marked_interrupted_by_the_next(data: QualityData) -> None:
    """A check process killed mid-run leaves 'running' rows (and, killed after committing its
    flags, those flags); the next run of the same scope, holding the run lock, marks them
    failed and deletes the flags."""
    data.session(carif_session_numero="blocked")
    with data.engine.begin() as conn:
        ledger = data.meta.tables["run_ledger"]
        stale_ledger = conn.execute(
            sa.insert(ledger)
            .values(run_kind="quality_check", source=None, started_at=NOW, status="running")
            .returning(ledger.c.id)
        ).scalar_one()
        check_run = data.meta.tables["quality_check_run"]
        stale_check = conn.execute(
            sa.insert(check_run)
            .values(run_ledger_id=stale_ledger, as_of=AS_OF, started_at=NOW, status="running")
            .returning(check_run.c.id)
        ).scalar_one()
        # It had committed its flags, and was killed before GX validated them.
        conn.execute(
            sa.insert(data.meta.tables["quality_check_result"]).values(
                check_run_id=stale_check,
                rule_id=HEADLINE_RULE,
                severity="error",
                as_of=AS_OF,
                detail_key="",
                flag_key="left|behind",
            )
        )
    run = run_checks(data.url, AS_OF)
    with data.engine.connect() as conn:
        ledger_row = conn.execute(
            sa.text("SELECT status, error FROM run_ledger WHERE id = :id"), {"id": stale_ledger}
        ).one()
        check_status = conn.execute(
            sa.text("SELECT status FROM quality_check_run WHERE id = :id"), {"id": stale_check}
        ).scalar_one()
        current = conn.execute(
            sa.text("SELECT status FROM run_ledger WHERE id = :id"), {"id": run.run_ledger_id}
        ).scalar_one()
    assert ledger_row.status == "failed" and "interrupted" in ledger_row.error
    assert check_status == "failed"
    assert current == "succeeded"
    with data.engine.connect() as conn:
        left = conn.execute(
            sa.text("SELECT COUNT(*) FROM quality_check_result WHERE check_run_id = :id"),
            {"id": stale_check},
        ).scalar_one()
    assert left == 0


def test_check_runs_of_one_scope_are_serialised(data: QualityData) -> None:
    """While a check run of a scope holds its lock, another waits, then fails clearly."""
    from core.history import RunLockTimeout, run_lock

    data.session(carif_session_numero="blocked")
    with (
        run_lock(data.engine, run_kind="quality_check", source="*", timeout=1),
        pytest.raises(RunLockTimeout, match="another quality_check run"),
    ):
        run_checks(data.url, AS_OF, lock_timeout=0.5)
    assert run_checks(data.url, AS_OF).flags  # free again afterwards


def test_flags_are_stored_set_based_and_rendered_when_read(data: QualityData) -> None:
    """Flags are written by SQL with no message; readers render the same French sentence
    as rules.yaml gives, and a dry run counts exactly what a stored run stores."""
    from pipelines import orchestration

    s = data.session
    s(carif_session_numero="never_any")  # headline, no modality at all
    past = s(carif_session_numero="past_ico")
    data.slot(past, "ico", starts_on=days(-10))
    dry = orchestration.run_checks(as_of=AS_OF, source="", db_url=data.url, dry_run=True)
    run = run_checks(data.url, AS_OF)
    assert dry["check_run_id"] is None
    assert dry["rules"] == run.rule_counts and dry["flags"] == run.flags_total > 0
    with data.engine.connect() as conn:
        messages = conn.execute(
            sa.text("SELECT DISTINCT message FROM quality_check_result WHERE check_run_id = :id"),
            {"id": run.id},
        ).scalars()
        assert list(messages) == [None]
        stored_total = conn.execute(
            sa.text("SELECT flags_total FROM quality_check_run WHERE id = :id"), {"id": run.id}
        ).scalar_one()
    assert stored_total == run.flags_total == len(run.flags)
    rules = {rule.id: rule for rule in load_rules()}
    by_session = {f.carif_session_numero: f for f in run.flags if f.rule_id == HEADLINE_RULE}
    none = " ".join(rules[HEADLINE_RULE].details["kairos_not_checked_none"].split())
    assert by_session["never_any"].message.endswith(none)
    assert "1 modalité(s) saisie(s)" in by_session["past_ico"].message
    assert days(-10).strftime("%d/%m/%Y") in by_session["past_ico"].message
    assert (run.sessions_blocked, run.sessions_unverified) == (0, 2)


def test_a_failed_check_run_leaves_no_flags(
    data: QualityData, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flags are committed before GX validates them; if validation fails, the run is
    marked failed and its flags are deleted, so no reader sees half a run."""
    from quality_checks import runner

    data.session(carif_session_numero="blocked")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("validation service down")

    monkeypatch.setattr(runner, "validate_run", broken)
    with pytest.raises(RuntimeError, match="validation service down"):
        run_checks(data.url, AS_OF)
    with data.engine.connect() as conn:
        left = conn.execute(sa.text("SELECT COUNT(*) FROM quality_check_result")).scalar_one()
        status = conn.execute(sa.text("SELECT status FROM quality_check_run")).scalar_one()
        ledger = conn.execute(
            sa.text("SELECT status, error FROM run_ledger WHERE run_kind = 'quality_check'")
        ).one()
    assert left == 0 and status == "failed"
    assert ledger.status == "failed" and "validation service down" in ledger.error
    monkeypatch.undo()
    assert run_checks(data.url, AS_OF).flags_total > 0  # the next run succeeds


def _stored_flags(data: QualityData, run_id: int) -> list[tuple[object, ...]]:
    with data.engine.connect() as conn:
        return [
            tuple(row)
            for row in conn.execute(
                sa.text(
                    "SELECT rule_id, flag_key, detail_count, detail_date, kairos_session_id "
                    "FROM quality_check_result WHERE check_run_id = :id ORDER BY flag_key"
                ),
                {"id": run_id},
            )
        ]


def _many_cases(data: QualityData) -> None:
    """Sessions that several rules flag: blocked, bad SIRET, missing fields, bad dates."""
    s = data.session
    s(carif_session_numero="blocked")
    s(carif_session_numero="bad_siret", dispensateur_siret="123", dispensateur_siret_valid=False)
    s(carif_session_numero="no_content", contenu=" ", main_formacode=None)
    reversed_ = s(carif_session_numero="reversed", debut=days(20), fin=days(10))
    data.slot(reversed_, "ico", starts_on=days(30))
    data.slot(s(carif_session_numero="open"), "ico", starts_on=days(2))


@pytest.mark.postgres
def test_rules_on_several_connections_store_what_one_connection_stores(
    postgres_url: str,
) -> None:
    """PostgreSQL runs the rules on several connections at once; the flags, counts
    and headline figures must be exactly those of a run on one connection."""
    data = QualityData(postgres_url)
    try:
        _many_cases(data)
        one = run_checks(postgres_url, AS_OF, connections=1)
        three = run_checks(postgres_url, AS_OF, connections=3)
        assert len({r for r, *_ in _stored_flags(data, one.id)}) >= 4  # several rules flag
        assert _stored_flags(data, three.id) == _stored_flags(data, one.id)
        assert three.rule_counts == one.rule_counts
        assert (three.sessions_current, three.sessions_recruiting, three.sessions_blocked) == (
            one.sessions_current,
            one.sessions_recruiting,
            one.sessions_blocked,
        )
        with data.engine.connect() as conn:
            summaries = [
                json.loads(text)
                for text in conn.execute(
                    sa.text("SELECT summary_json FROM quality_check_run ORDER BY id")
                ).scalars()
            ]
        assert [s["connections"] for s in summaries] == [1, 3]
        assert set(summaries[1]["rule_seconds"]) == {r.id for r in load_rules()}
        assert set(summaries[1]["stage_seconds"]) == {"store_flags", "gx_validation"}
    finally:
        data.dispose()


@pytest.mark.postgres
def test_a_rule_failing_on_one_connection_fails_the_whole_run(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One rule breaks while others are being stored on other connections: the run fails
    with that rule's error, and no flag of the run is left (some had been committed)."""
    from quality_checks import runner

    data = QualityData(postgres_url)
    try:
        _many_cases(data)
        original = runner.store_rule_flags

        def store(conn: sa.Connection, rule: object, *args: object) -> int:
            if getattr(rule, "id", "") == "missing_kairos_field":
                raise RuntimeError("disk full while storing missing_kairos_field")
            return original(conn, rule, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(runner, "store_rule_flags", store)
        with pytest.raises(RuntimeError, match="disk full while storing"):
            run_checks(postgres_url, AS_OF, connections=2)
        with data.engine.connect() as conn:
            left = conn.execute(sa.text("SELECT COUNT(*) FROM quality_check_result")).scalar_one()
            status = conn.execute(sa.text("SELECT status FROM quality_check_run")).scalar_one()
        assert left == 0 and status == "failed"
    finally:
        data.dispose()


def test_rules_start_longest_first_by_the_last_run(data: QualityData) -> None:
    """With several connections the rules that took longest in the scope's last succeeded
    run start first (the short ones fill the gaps); with no earlier run, file order."""
    from quality_checks.runner import _longest_first

    rules = load_rules()
    assert _longest_first(data.engine, rules, None) == list(rules)
    run = run_checks(data.url, AS_OF)
    timings = {rule.id: 0.0 for rule in rules}
    timings.update({rules[5].id: 9.0, rules[2].id: 4.0})
    with data.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE quality_check_run SET summary_json = :s WHERE id = :id"),
            {"s": json.dumps({"rule_seconds": timings}), "id": run.id},
        )
    order = _longest_first(data.engine, rules, None)
    assert order[:2] == [rules[5], rules[2]]
    assert order[2:] == [r for r in rules if r not in (rules[5], rules[2])]
    assert _longest_first(data.engine, rules, "another-source") == list(rules)
