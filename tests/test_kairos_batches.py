"""Enrolments are written a batch of lines at a time (pipelines/kairos_exports/enrolments.py):
the outcome must not depend on where the batch boundaries fall, on SQLite and PostgreSQL.

The reference is a batch of one line — each line confronted with what the lines before it
wrote, as a line-by-line loader would. The files put several lines of one candidate next to
each other (a replay, a later state, a missing identifier filled in, a stale line, an
impossible transition), so that small batches cut through them and large ones hold them whole.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from kairos_export_fixtures import (
    PEOPLE,
    PSEUDONYM_KEY,
    SESSION_A,
    SESSION_M,
    SESSION_UNKNOWN,
    SIRET_A,
    SIRET_B,
    SIRET_M,
    appointment,
    insert_session,
    training_plan,
    write_export,
)

from core.db import get_engine, migrate
from pipelines.kairos_exports import ingest_export

P = PEOPLE


def plan_lines() -> list[dict[str, str]]:
    return [
        training_plan(P[0]),
        training_plan(P[0]),  # the same line again: nothing new
        training_plan(P[0], dd_datefinplanformation="31/01/2025"),  # a later end: an update
        training_plan(P[1], c_individulocal=""),  # national identifier only …
        training_plan(P[1]),  # … then both: the same enrolment, its local one filled in …
        training_plan(
            P[1], dn_individu_national="", dc_lblformation="Intitulé local"
        ),  # … found by it
        training_plan(P[2], dc_numeroicsession=SESSION_UNKNOWN),  # unmatched, kept
        training_plan(P[3], dd_datedebutplanformation="31/02/2024"),  # quarantined
        training_plan(P[4], dc_numeroicsession=SESSION_M, dc_siretformateur=SIRET_B),
        training_plan(P[4], dc_numeroicsession=SESSION_M, dc_siretformateur=SIRET_B),
        training_plan(P[5]),
        # A key of an already-read session number (its sessions were read whole): unmatched.
        training_plan(P[7], dc_siretformateur=SIRET_B),
        training_plan(P[1], c_individulocal="", dc_lblformation="Autre intitulé"),
    ]


def appointment_lines() -> list[dict[str, str]]:
    return [
        appointment(P[0]),  # positionné
        appointment(P[0], presence="Présent", date_maj="13/03/2024"),
        appointment(P[0], presence="Présent", date_maj="13/03/2024"),  # replay
        appointment(P[0], presence="Présent", resultat="Retenu", date_maj="14/03/2024"),
        appointment(P[0], date_maj="12/03/2024"),  # an older state: stale, nothing new
        appointment(P[6]),
        appointment(P[6], presence="Absent", date_maj="13/03/2024"),
        appointment(P[6], presence="Présent", resultat="Retenu", date_maj="15/03/2024"),
        appointment(P[2], modalite="RDVI", date_rdv="18/03/2024", date_maj="18/03/2024"),
        appointment(P[2], statut_rdv="Annulé", date_maj="17/03/2024"),
    ]


def snapshot(url: str) -> dict[str, Any]:
    """What was stored, without ids, run ids and clocks."""
    engine = get_engine(url)
    with engine.connect() as conn:
        enrolments = conn.execute(
            sa.text(
                "SELECT e.enrolment_key, e.candidate, e.candidate_local, e.candidate_national,"
                " e.dispensateur_siret, e.link_method, s.carif_session_numero AS linked,"
                " e.current_status, e.status_date, e.current_slot_key, e.entry_date,"
                " e.planned_end, e.formation_label, e.first_source, e.last_source,"
                " e.content_hash FROM enrolment e"
                " LEFT JOIN kairos_session s ON s.id = e.kairos_session_id"
                " ORDER BY e.enrolment_key"
            )
        ).all()
        events = conn.execute(
            sa.text(
                "SELECT e.enrolment_key, v.seq, v.status, v.previous_status, v.event_date,"
                " v.slot_key, v.source_kind, v.source_line, r.slot_key AS slot"
                " FROM enrolment_event v JOIN enrolment e ON e.id = v.enrolment_id"
                " LEFT JOIN recruitment_slot r ON r.id = v.recruitment_slot_id"
                " ORDER BY e.enrolment_key, v.seq"
            )
        ).all()
        quarantine = conn.execute(
            sa.text("SELECT file, line, path, reasons FROM quarantine ORDER BY file, line")
        ).all()
    engine.dispose()
    return {"enrolments": enrolments, "events": events, "quarantine": quarantine}


def ingest_all(url: str, tmp_path: Path, batch_lines: int) -> list[dict[str, int]]:
    engine = get_engine(url)
    migrate(engine)
    insert_session(engine, SESSION_A, SIRET_A, SIRET_M)
    insert_session(engine, SESSION_M, SIRET_M, SIRET_M)
    engine.dispose()
    plans = write_export(tmp_path / "plans.csv", "training-plans", plan_lines())
    appointments = write_export(tmp_path / "rdv.csv", "appointments", appointment_lines())
    counts = []
    steps = [(plans, "training-plans"), (appointments, "appointments"), (plans, "training-plans")]
    for path, kind in steps:
        result = ingest_export(
            path,
            kind=kind,  # type: ignore[arg-type]
            db_url=url,
            pseudonym_key=PSEUDONYM_KEY,
            batch_lines=batch_lines,
        )
        counts.append(result.counts)
    return counts


@pytest.mark.parametrize("batch_lines", [2, 3, 5_000])
def test_batch_boundaries_do_not_change_the_outcome(
    db_url: str, second_db: str, tmp_path: Path, batch_lines: int
) -> None:
    (tmp_path / "one").mkdir()
    (tmp_path / "many").mkdir()
    reference_counts = ingest_all(db_url, tmp_path / "one", 1)
    counts = ingest_all(second_db, tmp_path / "many", batch_lines)
    reference, batched = snapshot(db_url), snapshot(second_db)

    # The reference itself is what the lines say (so that equality below means something).
    keys = [row.enrolment_key for row in reference["enrolments"]]
    assert len(keys) == 8  # P0, P1, P2 (plan, unmatched) and P2 (RDVI), P4, P5, P6, P7
    first_plan = reference_counts[0]
    assert first_plan["inserted"] == 6 and first_plan["quarantined"] == 1
    assert first_plan["unmatched"] == 2 and first_plan["linked"] == 10
    assert all("ambiguous_links" not in run for run in reference_counts)  # one session each
    assert first_plan["unchanged"] == 2  # the replayed lines of P0 and P4
    assert first_plan["updated"] == 4  # P0's later end; P1's local id, then two new labels
    p1 = [r for r in reference["enrolments"] if r.formation_label == "Autre intitulé"]
    assert len(p1) == 1 and p1[0].candidate_local and p1[0].candidate_national
    assert reference_counts[2].get("inserted", 0) == 0  # re-ingesting the plans: nothing new
    # … but its lines of P0 and P1 each set their own values again (the last line wins).
    assert reference_counts[2].get("updated", 0) == 5

    assert batched == reference
    assert counts == reference_counts


BOOM = {
    "postgresql": (
        "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " RAISE EXCEPTION 'refused by the test'; END $$",
        "CREATE TRIGGER boom BEFORE INSERT ON enrolment_event FOR EACH ROW"
        " WHEN (NEW.source_line = 5) EXECUTE FUNCTION boom()",
    ),
    "sqlite": (
        "CREATE TRIGGER boom BEFORE INSERT ON enrolment_event WHEN NEW.source_line = 5"
        " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
    ),
}


@pytest.mark.parametrize("batch_lines", [1, 2, 5_000])
def test_a_batch_the_database_refuses_fails_the_run_and_writes_nothing(
    db: str, tmp_path: Path, batch_lines: int
) -> None:
    """The write of one batch fails (on PostgreSQL while the next lines are being read, in
    the writer thread): the run fails with that error, its ledger row says so, and none of
    the batches before it stays."""
    engine = get_engine(db)
    insert_session(engine, SESSION_A, SIRET_A, SIRET_M)
    with engine.begin() as conn:
        for statement in BOOM[engine.dialect.name]:
            conn.exec_driver_sql(statement)
    plans = write_export(tmp_path / "plans.csv", "training-plans", plan_lines())
    with pytest.raises(Exception, match="refused by the test"):
        ingest_export(
            plans,
            kind="training-plans",
            db_url=db,
            pseudonym_key=PSEUDONYM_KEY,
            batch_lines=batch_lines,
        )
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT COUNT(*) FROM enrolment")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT COUNT(*) FROM enrolment_event")).scalar_one() == 0
        assert conn.execute(sa.text("SELECT COUNT(*) FROM quarantine")).scalar_one() == 0
        status, error = conn.execute(
            sa.text(
                "SELECT status, error FROM run_ledger WHERE run_kind = 'training-plans'"
                " ORDER BY id DESC"
            )
        ).one()
    engine.dispose()
    assert status == "failed"
    assert error  # the class is kept, the driver's text withheld (it may quote the file)
