"""Ingesting KAIROS / France Travail exports, on SQLite and PostgreSQL.

Fixtures: tests/kairos_export_fixtures.py (synthetic, with fake personal data so the
privacy test below means something).
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import deque
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from kairos_export_fixtures import (
    FIXTURES_DIR,
    PEOPLE,
    PSEUDONYM_KEY,
    SESSION_A,
    SESSION_M,
    SESSION_UNKNOWN,
    SIRET_A,
    SIRET_B,
    SIRET_M,
    SIRET_X,
    STATIC_FIXTURES,
    Person,
    appointment,
    insert_session,
    personal_data,
    training_plan,
    write_export,
)
from typer.testing import CliRunner

from core.db import get_engine, migrate
from core.history import start_run
from pipelines.cli import app
from pipelines.kairos_exports import (
    MissingColumnError,
    PseudonymKeyError,
    UndecodableFileError,
    ingest_export,
    pseudonym,
)
from pipelines.kairos_exports.enrolments import Candidate, Enrolments
from pipelines.kairos_exports.lifecycle import TRANSITIONS, Status, Step, Transition
from pipelines.kairos_exports.pseudonym import Pseudonymiser
from pipelines.kairos_exports.queries import (
    enrolment_history,
    enrolment_status_as_of,
    has_valid_account,
    neutralise_cell,
    sessions_without_kairos_account,
    valid_accounts,
)
from pipelines.kairos_exports.run import Run
from pipelines.kairos_exports.tables import reflect_tables

PSEUDO = Pseudonymiser(PSEUDONYM_KEY)
runner = CliRunner()


def fixture(kind: str) -> list[Path]:
    return [FIXTURES_DIR / name for name, k, *_ in STATIC_FIXTURES if k == kind]


def who(person: Person) -> str:
    value = PSEUDO.pseudonym("local", person.local_id)
    assert value
    return value


def rows(url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    engine = get_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(sql), params)]
    finally:
        engine.dispose()


def iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAIROS_PSEUDONYM_KEY", PSEUDONYM_KEY.decode())


@pytest.fixture
def db(db_url: str, key: None) -> str:
    """A migrated database with the two KAIROS sessions the fixtures refer to."""
    engine = get_engine(db_url)
    migrate(engine)
    insert_session(engine, SESSION_A, SIRET_A, SIRET_M)
    insert_session(engine, SESSION_M, SIRET_M, SIRET_M)  # guichet unique: mandataire's account
    engine.dispose()
    return db_url


def session_id(url: str, carif: str) -> int:
    [row] = rows(url, "SELECT id FROM kairos_session WHERE carif_session_numero = :n", n=carif)
    return int(row["id"])


def enrolment(url: str, person: Person) -> dict[str, Any]:
    [row] = rows(url, "SELECT * FROM enrolment WHERE candidate = :c", c=who(person))
    return {k: iso(v) for k, v in row.items()}


def statuses(url: str, person: Person) -> list[str]:
    return [
        r["status"]
        for r in rows(
            url,
            "SELECT ev.status FROM enrolment_event ev JOIN enrolment e ON e.id = ev.enrolment_id "
            "WHERE e.candidate = :c ORDER BY ev.seq",
            c=who(person),
        )
    ]


def quarantine(url: str) -> list[dict[str, Any]]:
    return rows(url, "SELECT * FROM quarantine ORDER BY run_id, line")


def ledger(url: str) -> list[dict[str, Any]]:
    return rows(url, "SELECT * FROM run_ledger WHERE run_kind <> 'test-setup' ORDER BY id")


# -- adherents -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", fixture("adherents"), ids=lambda p: p.name)
def test_adherents(db: str, path: Path) -> None:
    result = ingest_export(path, kind="adherents", db_url=db)
    assert result.status == "succeeded"
    assert result.counts == {"lines_read": 6, "inserted": 4, "quarantined": 2}
    assert [(q["line"], q["path"], q["record_kind"]) for q in quarantine(db)] == [
        (6, "SIRET", "adherent"),
        (7, "date début", "adherent"),
    ]
    [reason] = json.loads(quarantine(db)[1]["reasons"])
    assert reason == {"line": 7, "path": "date début", "message": reason["message"]}
    assert "32/01/2024" in reason["message"]
    [run] = ledger(db)
    assert (run["run_kind"], run["status"], run["snapshot_file"]) == (
        "adherents",
        "succeeded",
        path.name,
    )
    assert json.loads(run["counts_json"])["inserted"] == 4

    engine = get_engine(db)
    with engine.connect() as conn:
        assert [a["convention"] for a in valid_accounts(conn, SIRET_A, date(2024, 6, 1))] == [
            "CONV-2023-001"
        ]
        assert [a["convention"] for a in valid_accounts(conn, SIRET_A, date(2021, 6, 1))] == [
            "CONV-2019-007"
        ]
        assert has_valid_account(conn, SIRET_A, date(2025, 12, 31))  # bounds included
        assert not has_valid_account(conn, SIRET_A, date(2026, 1, 1))
        assert has_valid_account(conn, SIRET_M, date(2031, 1, 1))  # open-ended convention
        assert not has_valid_account(conn, SIRET_X, date(2024, 6, 1))  # expired
        assert not has_valid_account(conn, SIRET_B, date(2024, 6, 1))  # its line was refused
        assert sessions_without_kairos_account(conn, date(2024, 6, 1)) == []
        missing = sessions_without_kairos_account(conn, date(2018, 6, 1))
        assert sorted(m["carif_session_numero"] for m in missing) == [SESSION_A, SESSION_M]
    engine.dispose()


# -- training plans --------------------------------------------------------------------------


@pytest.mark.parametrize("path", fixture("training-plans"), ids=lambda p: p.name)
def test_training_plans(db: str, path: Path) -> None:
    result = ingest_export(path, kind="training-plans", db_url=db, as_of=date(2024, 10, 1))
    assert result.status == "succeeded"
    assert result.counts["lines_read"] == 6
    assert result.counts["inserted"] == 4
    assert result.counts["linked"] == 3
    assert result.counts["unmatched"] == 1
    assert result.counts["quarantined"] == 2
    assert [(q["line"], q["path"]) for q in quarantine(db)] == [
        (5, "dd_datedebutplanformation"),
        (6, "dc_siretformateur"),
    ]

    linked = enrolment(db, PEOPLE[0])
    assert linked["kairos_session_id"] == session_id(db, SESSION_A)
    assert (linked["link_method"], linked["dispensateur_siret"]) == ("dispensateur", SIRET_A)
    assert linked["responsable_siret"] == SIRET_M
    assert linked["candidate_national"] == PSEUDO.pseudonym("national", PEOPLE[0].national_id)
    assert (linked["current_status"], linked["status_date"]) == ("inscrit", "2024-09-02")
    assert (linked["planned_start"], linked["planned_end"]) == ("2024-09-02", "2024-12-20")
    assert linked["financeurs"] == "10;13"
    assert linked["first_source"] == "training-plans"

    fallback = enrolment(db, PEOPLE[1])  # formateur B has no session: the responsable's
    assert fallback["kairos_session_id"] == session_id(db, SESSION_M)
    assert (fallback["link_method"], fallback["dispensateur_siret"]) == ("responsable", SIRET_M)

    unmatched = enrolment(db, PEOPLE[2])  # kept, not dropped
    assert unmatched["kairos_session_id"] is None and unmatched["link_method"] is None
    assert unmatched["carif_session_numero"] == SESSION_UNKNOWN
    assert unmatched["current_status"] == "inscrit"

    quoted = enrolment(db, PEOPLE[5])
    assert quoted["formation_label"] == "Titre pro | Gestionnaire; comptable"
    assert quoted["planned_start"] == "2024-09-02"


def test_training_plan_registration_date_is_capped_by_as_of(db: str, tmp_path: Path) -> None:
    path = write_export(tmp_path / "tp.csv", "training-plans", [training_plan(PEOPLE[0])])
    ingest_export(path, kind="training-plans", db_url=db, as_of=date(2024, 6, 15))
    assert enrolment(db, PEOPLE[0])["status_date"] == "2024-06-15"


# -- appointments ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", fixture("appointments"), ids=lambda p: p.name)
def test_appointments(db: str, path: Path) -> None:
    result = ingest_export(path, kind="appointments", db_url=db)
    assert result.status == "succeeded"
    counts = result.counts
    assert (counts["lines_read"], counts["inserted"], counts["quarantined"]) == (9, 7, 2)
    assert (counts["slots_inserted"], counts["slots_closed"], counts["slots_unmatched"]) == (
        4,
        1,
        1,
    )
    assert [(q["line"], q["path"]) for q in quarantine(db)] == [(8, "status"), (10, "date_rdv")]
    assert "impossible transition 'non_retenu' → 'inscrit'" in quarantine(db)[0]["reasons"]

    p = PEOPLE
    assert statuses(db, p[0]) == ["positionne", "present", "retenu", "inscrit"]
    assert statuses(db, p[6]) == ["positionne", "absent"]
    assert statuses(db, p[7]) == ["positionne", "rdv_annule"]
    assert statuses(db, p[8]) == ["positionne", "contacte", "present", "retenu_en_attente"]
    assert statuses(db, p[9]) == ["positionne", "rdv_supprime"]
    assert statuses(db, p[10]) == ["positionne"]
    assert statuses(db, p[12]) == ["positionne", "present", "retenu", "inscrit", "entre", "sorti"]

    exited = enrolment(db, p[12])
    assert (exited["entry_date"], exited["exit_date"]) == ("2024-09-02", "2024-12-20")
    assert (exited["origin"], exited["modality"]) == ("cap_emploi", "ico")
    assert enrolment(db, p[8])["origin"] == "mission_locale"
    unlinked = enrolment(db, p[10])
    assert unlinked["kairos_session_id"] is None and unlinked["current_status"] == "positionne"

    slots = rows(
        db,
        "SELECT slot_key, modality, modality_code, starts_on, ends_on, start_time, capacity, "
        "remote, closed_at, closed_run_id, origin FROM recruitment_slot ORDER BY slot_key",
    )
    assert [(s["slot_key"], s["modality_code"], s["capacity"]) for s in slots] == [
        ("candidature:2024-03-01:2024-03-31", 7, 20),
        ("ico:2024-03-12:09:30", 9, 12),
        ("ico:2024-03-19:14:00", 9, 12),
        ("rdvi:2024-03-14:10:00", 8, 12),
    ]
    assert {s["origin"] for s in slots} == {"kairos"}
    deleted = [s for s in slots if s["closed_at"] is not None]
    assert [s["slot_key"] for s in deleted] == ["ico:2024-03-19:14:00"]
    assert deleted[0]["closed_run_id"] == result.run_id
    versions = rows(db, "SELECT change_kind FROM recruitment_slot_version ORDER BY id")
    assert sorted(v["change_kind"] for v in versions) == ["close", "insert", "insert", "insert"]
    events = rows(
        db,
        "SELECT ev.recruitment_slot_id FROM enrolment_event ev JOIN enrolment e "
        "ON e.id = ev.enrolment_id WHERE e.candidate = :c AND ev.status = 'absent'",
        c=who(p[6]),
    )
    assert events[0]["recruitment_slot_id"] is not None


def test_appointments_meet_training_plans(db: str) -> None:
    """Both sources describe the same enrolment: one row, the plan's dates, no duplicates."""
    [tp_path] = fixture("training-plans")[:1]
    ingest_export(FIXTURES_DIR / "appointments_utf8_semicolon.csv", kind="appointments", db_url=db)
    ingest_export(tp_path, kind="training-plans", db_url=db, as_of=date(2024, 10, 1))
    row = enrolment(db, PEOPLE[0])
    assert row["first_source"] == "appointments" and row["last_source"] == "training-plans"
    assert row["planned_start"] == "2024-09-02" and row["origin"] == "france_travail"
    assert row["candidate_national"] is not None
    assert statuses(db, PEOPLE[0]) == ["positionne", "present", "retenu", "inscrit"]


# -- idempotence -----------------------------------------------------------------------------


def snapshot(url: str) -> dict[str, list[dict[str, Any]]]:
    tables = (
        "kairos_adherent",
        "enrolment",
        "enrolment_event",
        "recruitment_slot",
        "recruitment_slot_version",
    )
    return {t: rows(url, f"SELECT * FROM {t} ORDER BY id") for t in tables}


@pytest.mark.parametrize("kind", ["adherents", "training-plans", "appointments"])
def test_reingesting_the_same_file_is_a_noop(db: str, kind: str) -> None:
    first, other = fixture(kind)
    ingest_export(first, kind=kind, db_url=db, as_of=date(2024, 10, 1))  # type: ignore[arg-type]
    before = snapshot(db)
    again = ingest_export(first, kind=kind, db_url=db, as_of=date(2024, 10, 1))  # type: ignore[arg-type]
    # Same data in the other encoding and separator: still nothing new.
    same = ingest_export(other, kind=kind, db_url=db, as_of=date(2024, 10, 2))  # type: ignore[arg-type]
    assert snapshot(db) == before
    for result in (again, same):
        assert result.status == "noop"
        assert "inserted" not in result.counts and "events" not in result.counts
        assert result.counts["unchanged"] >= 4
    assert [r["status"] for r in ledger(db)] == ["succeeded", "noop", "noop"]


# -- refused files ---------------------------------------------------------------------------


def assert_nothing_loaded(url: str) -> None:
    for table in (
        "kairos_adherent",
        "enrolment",
        "enrolment_event",
        "recruitment_slot",
        "quarantine",
    ):
        assert rows(url, f"SELECT COUNT(*) AS n FROM {table}")[0]["n"] == 0, table


@pytest.mark.parametrize("kind", ["adherents", "training-plans", "appointments"])
def test_undecodable_file_is_refused_whole(db: str, tmp_path: Path, kind: str) -> None:
    path = write_export(tmp_path / "export.csv", kind)
    path.write_bytes(path.read_bytes() + b"\x81\x8d\x90 not text\r\n")
    with pytest.raises(UndecodableFileError, match=r"export\.csv"):
        ingest_export(path, kind=kind, db_url=db)  # type: ignore[arg-type]
    [run] = ledger(db)
    assert run["status"] == "failed" and "export.csv" in run["error"]
    assert run["snapshot_sha256"] and run["finished_at"] is not None
    assert_nothing_loaded(db)


@pytest.mark.parametrize(
    ("kind", "column"),
    [
        ("adherents", "date fin"),
        ("training-plans", "dc_siretformateur"),
        ("appointments", "date_maj"),
    ],
)
def test_missing_column_is_refused_whole(db: str, tmp_path: Path, kind: str, column: str) -> None:
    path = write_export(tmp_path / "export.csv", kind)
    lines = path.read_bytes().decode("utf-8").split("\r\n")
    header = next(csv.reader([lines[0]], delimiter="|"))
    index = header.index(column)
    kept = [
        "|".join(f for i, f in enumerate(next(csv.reader([line], delimiter="|"))) if i != index)
        for line in lines[:2]
    ]
    path.write_text("\r\n".join(kept) + "\r\n", encoding="utf-8")
    with pytest.raises(MissingColumnError) as caught:
        ingest_export(path, kind=kind, db_url=db)  # type: ignore[arg-type]
    assert "export.csv" in str(caught.value) and f"'{column}'" in str(caught.value)
    [run] = ledger(db)
    assert run["status"] == "failed" and f"'{column}'" in run["error"]
    assert_nothing_loaded(db)


def test_missing_pseudonym_key_is_an_error(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAIROS_PSEUDONYM_KEY")
    monkeypatch.setattr(pseudonym, "_airflow_connection_password", lambda: None)
    with pytest.raises(PseudonymKeyError, match="KAIROS_PSEUDONYM_KEY"):
        ingest_export(fixture("appointments")[0], kind="appointments", db_url=db)
    assert ledger(db)[0]["status"] == "failed"
    assert_nothing_loaded(db)
    with pytest.raises(PseudonymKeyError, match="shorter"):
        ingest_export(
            fixture("appointments")[0], kind="appointments", db_url=db, pseudonym_key=b"short"
        )
    # The adherents list has no candidates: no key needed.
    assert ingest_export(fixture("adherents")[0], kind="adherents", db_url=db).status == "succeeded"


def test_airflow_connection_is_the_fallback_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAIROS_PSEUDONYM_KEY", raising=False)
    monkeypatch.setattr(
        pseudonym, "_airflow_connection_password", lambda: "from-airflow-0123456789"
    )
    assert pseudonym.load_key() == b"from-airflow-0123456789"


# -- the lifecycle through successive files --------------------------------------------------


def test_lifecycle_over_successive_exports(db: str, tmp_path: Path) -> None:
    p = PEOPLE
    ico = {"date_rdv": "12/03/2024", "heure_debut": "09:30"}
    other_ico = {"date_rdv": "26/03/2024", "heure_debut": "14:00"}
    days = [
        [  # day 1: positioned
            appointment(p[0], **ico, date_maj="05/03/2024"),
            appointment(p[1], **ico, date_maj="05/03/2024"),
            appointment(p[2], **ico, date_maj="05/03/2024"),
            appointment(p[3], **ico, date_maj="05/03/2024"),
            appointment(p[4], **ico, date_maj="05/03/2024"),
        ],
        [  # day 2: the ICO took place
            appointment(p[0], **ico, presence="Présent", resultat="Retenu", date_maj="12/03/2024"),
            appointment(p[1], **ico, presence="Absent", date_maj="12/03/2024"),
            appointment(
                p[2], **ico, presence="Présent", resultat="Non retenu", date_maj="12/03/2024"
            ),
            appointment(
                p[3], **ico, presence="Présent", resultat="en attente", date_maj="12/03/2024"
            ),
            appointment(p[4], **ico, statut_rdv="RDV annulé", date_maj="10/03/2024"),
        ],
        [  # day 3: corrections, transfer, waiting list, validation
            appointment(
                p[0],
                **ico,
                presence="Présent",
                resultat="Retenu",
                statut_inscription="A valider",
                date_maj="15/03/2024",
            ),
            appointment(p[1], **other_ico, date_maj="15/03/2024"),  # absent → transferred
            appointment(p[2], **ico, presence="Présent", resultat="Retenu", date_maj="15/03/2024"),
            appointment(p[3], **ico, presence="Présent", resultat="Retenu", date_maj="15/03/2024"),
            appointment(p[4], **ico, presence="Présent", date_maj="15/03/2024"),  # cancelled RDV
        ],
        [  # day 4: registration, entry, interruption
            appointment(
                p[0],
                **ico,
                presence="Présent",
                resultat="Retenu",
                statut_inscription="Interruption",
                date_entree="02/09/2024",
                date_maj="01/10/2024",
            ),
        ],
        [  # day 5: back, then exit
            appointment(
                p[0],
                **ico,
                presence="Présent",
                resultat="Retenu",
                statut_inscription="Entré",
                date_entree="02/09/2024",
                date_maj="20/10/2024",
            ),
        ],
        [
            appointment(
                p[0],
                **ico,
                presence="Présent",
                resultat="Retenu",
                statut_inscription="Sorti",
                date_entree="02/09/2024",
                date_sortie="20/12/2024",
                date_maj="20/12/2024",
            ),
        ],
        [  # an older export arrives late: stale, ignored
            appointment(p[0], **ico, presence="Présent", resultat="Retenu", date_maj="12/03/2024"),
        ],
        [  # re-entry after the exit: impossible
            appointment(
                p[0],
                **ico,
                presence="Présent",
                resultat="Retenu",
                statut_inscription="Entré",
                date_entree="05/01/2025",
                date_maj="06/01/2025",
            ),
        ],
    ]
    results = []
    for number, lines in enumerate(days, start=1):
        path = write_export(tmp_path / f"day{number}.csv", "appointments", lines, separator=";")
        results.append(ingest_export(path, kind="appointments", db_url=db))

    assert statuses(db, p[0]) == [
        "positionne", "present", "retenu", "a_valider", "inscrit", "entre", "interruption",
        "entre", "sorti",
    ]  # fmt: skip
    assert statuses(db, p[1]) == ["positionne", "absent", "positionne"]
    assert enrolment(db, p[1])["current_slot_key"] == "ico:2024-03-26:14:00"
    assert statuses(db, p[2]) == ["positionne", "present", "non_retenu", "retenu"]
    assert statuses(db, p[3]) == ["positionne", "present", "retenu_en_attente", "retenu"]
    assert statuses(db, p[4]) == ["positionne", "rdv_annule"]
    row = enrolment(db, p[0])
    assert (row["entry_date"], row["exit_date"]) == ("2024-09-02", "2024-12-20")

    assert results[6].status == "noop" and results[6].counts["unchanged"] == 1
    day3 = [q for q in quarantine(db) if q["run_id"] == results[2].run_id]
    assert [(q["line"], q["path"]) for q in day3] == [(6, "status")]
    assert "'rdv_annule' → 'present'" in day3[0]["reasons"]
    day8 = [q for q in quarantine(db) if q["run_id"] == results[7].run_id]
    assert "'sorti' → 'entre'" in day8[0]["reasons"]

    # A training plan for a candidate who was not retained is impossible too.
    tp = write_export(
        tmp_path / "tp.csv", "training-plans", [training_plan(p[2]), training_plan(p[4])]
    )
    result = ingest_export(tp, kind="training-plans", db_url=db, as_of=date(2024, 10, 1))
    assert result.counts["quarantined"] == 1  # p[4]: rdv_annule → inscrit
    assert statuses(db, p[2])[-1] == "inscrit"  # retenu → inscrit

    engine = get_engine(db)
    with engine.connect() as conn:
        as_of = {
            r["candidate"]: (r["status"], r["status_date"])
            for r in enrolment_status_as_of(conn, date(2024, 3, 12))
        }
        assert as_of[who(p[0])] == ("retenu", "2024-03-12")
        assert as_of[who(p[1])] == ("absent", "2024-03-12")
        later = {
            r["candidate"]: r["status"] for r in enrolment_status_as_of(conn, date(2024, 9, 30))
        }
        assert later[who(p[0])] == "entre"
        end = {r["candidate"]: r["status"] for r in enrolment_status_as_of(conn, date(2025, 1, 1))}
        assert end[who(p[0])] == "sorti"
        before = enrolment_status_as_of(conn, date(2024, 3, 1))
        assert who(p[0]) not in {r["candidate"] for r in before}
        history = enrolment_history(conn, who(p[0]))
        assert [h["seq"] for h in history] == list(range(1, 10))
        assert history[1]["previous_status"] == "positionne"
    engine.dispose()


def _path_to(target: Status) -> list[Status]:
    """The shortest path of statuses from the start of an enrolment to `target`."""
    queue: deque[tuple[Status | None, list[Status]]] = deque([(None, [])])
    seen: set[Status | None] = {None}
    while queue:
        current, path = queue.popleft()
        if current is target:
            return path
        for t in TRANSITIONS:
            if t.source is current and t.target not in seen and not t.other_slot_only:
                seen.add(t.target)
                queue.append((t.target, [*path, t.target]))
    raise AssertionError(target)


def test_every_allowed_transition_in_the_database(db: str) -> None:
    """Each row of the transition table, written as events through the loader's code."""
    engine = get_engine(db)
    tables = reflect_tables(
        engine, ["quarantine", "kairos_session", "enrolment", "enrolment_event", "recruitment_slot"]
    )
    run_id = start_run(engine, run_kind="appointments", source="kairos")
    values = {"carif_session_numero": SESSION_A, "dispensateur_siret": SIRET_A}

    def apply(enrolments: Enrolments, number: int, steps: tuple[Step, ...]) -> None:
        enrolments.apply(
            line=number,
            record_key=f"t{number}",
            session_key=SESSION_A,
            sirets={SIRET_A},
            who=Candidate(f"ps1_transition_{number}", None),
            steps=steps,
            values=dict(values),
            slot_ids={},
        )

    with engine.begin() as conn:
        enrolments = Enrolments(Run(conn, tables, run_id, "appointments", "kairos", "t.csv"))
        transition: Transition
        for number, transition in enumerate(TRANSITIONS):
            if transition.source is not None:
                before = tuple(
                    Step(s, date(2024, 3, 1), "ico:A") for s in _path_to(transition.source)
                )
                apply(enrolments, number, before)
            slot = "ico:B" if transition.other_slot_only else "ico:A"
            apply(enrolments, number, (Step(transition.target, date(2024, 3, 2), slot),))
        enrolments.flush()
        assert enrolments.run.counts.get("quarantined", 0) == 0
    for number, transition in enumerate(TRANSITIONS):
        [last] = rows(
            db,
            "SELECT ev.status, ev.previous_status, e.current_status FROM enrolment e "
            "JOIN enrolment_event ev ON ev.enrolment_id = e.id WHERE e.candidate = :c "
            "ORDER BY ev.seq DESC LIMIT 1",
            c=f"ps1_transition_{number}",
        )
        source = transition.source.value if transition.source else None
        assert (last["previous_status"], last["status"]) == (source, transition.target.value)
        assert last["current_status"] == transition.target.value
    engine.dispose()


# -- export ----------------------------------------------------------------------------------


def test_export_enrolments_cli(db: str, tmp_path: Path) -> None:
    lines = [
        appointment(
            PEOPLE[0],
            presence="Présent",
            resultat="Retenu",
            statut_inscription="Sorti",
            date_entree="02/09/2024",
            date_sortie="20/12/2024",
            date_maj="21/12/2024",
        ),
        appointment(PEOPLE[1], numero_session_carif='=HYPERLINK("http://x")'),
        appointment(PEOPLE[2], numero_session_carif="@SUM(A1)"),
    ]
    path = write_export(tmp_path / "rdv.csv", "appointments", lines)
    result = runner.invoke(app, ["ingest-kairos", str(path), "--kind", "appointments", "--db", db])
    assert result.exit_code == 0, result.output
    assert "succeeded" in result.stdout

    result = runner.invoke(app, ["export", "enrolments", "--db", db, "--format", "json"])
    assert result.exit_code == 0, result.output
    exported = json.loads(result.stdout)
    assert len(exported) == 3
    first = next(e for e in exported if e["candidate"] == who(PEOPLE[0]))
    assert {
        k: first[k]
        for k in (
            "carif_session",
            "dispensateur_siret",
            "status",
            "status_date",
            "origin",
            "entry_date",
            "exit_date",
        )
    } == {
        "carif_session": SESSION_A,
        "dispensateur_siret": SIRET_A,
        "status": "sorti",
        "status_date": "2024-12-20",
        "origin": "france_travail",
        "entry_date": "2024-09-02",
        "exit_date": "2024-12-20",
    }

    result = runner.invoke(app, ["export", "enrolments", "--db", db, "--format", "csv"])
    assert result.exit_code == 0, result.output
    records = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(records) == 3
    sessions = {r["carif_session"] for r in records}
    assert '\'=HYPERLINK("http://x")' in sessions and "'@SUM(A1)" in sessions
    assert all(not r[k].startswith(("=", "+", "-", "@")) for r in records for k in r)
    assert neutralise_cell("-1") == "'-1" and neutralise_cell("+33") == "'+33"
    assert neutralise_cell(None) == "" and neutralise_cell("SE_1") == "SE_1"


def test_cli_refuses_a_file_with_exit_2(db: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(b"SIRET|LIBELLE\r\n")
    result = runner.invoke(app, ["ingest-kairos", str(path), "--kind", "adherents", "--db", db])
    assert result.exit_code == 2
    assert "bad.csv" in result.stderr and "'date début'" in result.stderr


# -- privacy ---------------------------------------------------------------------------------


def test_no_personal_data_in_database_logs_or_outputs(
    db: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    outputs: list[str] = []
    for name, kind, *_ in STATIC_FIXTURES:
        result = runner.invoke(
            app, ["ingest-kairos", str(FIXTURES_DIR / name), "--kind", kind, "--db", db]
        )
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    # Lines full of personal data that go to quarantine, and a refused file.
    bad = [appointment(p, date_maj="not a date", presence="peut-être") for p in PEOPLE]
    ingest_export(
        write_export(tmp_path / "bad.csv", "appointments", bad), kind="appointments", db_url=db
    )
    with pytest.raises(UndecodableFileError) as refused:
        broken = write_export(tmp_path / "broken.csv", "training-plans")
        broken.write_bytes(broken.read_bytes() + b"\x81")
        ingest_export(broken, kind="training-plans", db_url=db)
    outputs.append(str(refused.value))
    for fmt in ("json", "csv"):
        result = runner.invoke(app, ["export", "enrolments", "--db", db, "--format", fmt])
        outputs.append(result.output)
    assert rows(db, "SELECT COUNT(*) AS n FROM enrolment")[0]["n"] >= 10
    assert rows(db, "SELECT COUNT(*) AS n FROM quarantine")[0]["n"] >= len(PEOPLE)

    needles = {v.lower() for v in personal_data()}
    needles |= {v.replace(" ", "").lower() for v in needles}
    haystacks: list[tuple[str, str]] = []
    engine = get_engine(db)
    inspector = sa.inspect(engine)
    with engine.connect() as conn:
        for table in inspector.get_table_names():
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                for column, value in row._mapping.items():
                    if value is not None:
                        haystacks.append((f"{table}.{column}", str(value)))
    engine.dispose()
    captured = capsys.readouterr()
    haystacks += [("log", caplog.text), ("stdout", captured.out), ("stderr", captured.err)]
    haystacks += [(f"cli output {i}", text) for i, text in enumerate(outputs)]
    assert len(haystacks) > 200
    leaks = [
        (where, needle) for where, text in haystacks for needle in needles if needle in text.lower()
    ]
    assert leaks == []
