"""France Travail training-plan exports as they really come (pipelines/kairos_exports),
on SQLite and PostgreSQL: the dispensateur columns named after the "organisme formateur",
`2018-05-22 00:00:00.0` dates, `NULL` and all-zero SIRETs, SIRETs failing their check digit.

A real file was refused whole ("missing required column 'dc_siretformateur'"); its `NULL`
SIRETs and check-digit failures were quarantined instead of linked. Files are written by
the project's fixture helpers (fake people, so the privacy scans elsewhere mean something).
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
    SIRET_A,
    SIRET_M,
    TRAINING_PLANS_HEADER,
    insert_session,
    render,
    training_plan,
)

from core.db import get_engine, migrate
from pipelines.kairos_exports import ingest_export
from pipelines.kairos_exports.pseudonym import Pseudonymiser

RENAMED = {
    "dc_siretformateur": "dc_siretorganismeformateur",
    "dc_lblorganismeformateur": "dc_lblorganismeorganismeformateur",
    "dc_raisonsocialeformateur": "dc_raisonsocialeorganismeformateur",
}
REAL_HEADER = (*(RENAMED.get(c, c) for c in TRAINING_PLANS_HEADER), "dc_nouvellecolonne")
# Fourteen digits failing the check digit: SIRET_A with its last digit changed.
BAD_CHECK = SIRET_A[:-1] + str((int(SIRET_A[-1]) + 1) % 10)
SESSION_BAD = "SE_00055555"
PSEUDO = Pseudonymiser(PSEUDONYM_KEY)


def _real(person_index: int, **values: str) -> dict[str, str]:
    row = training_plan(PEOPLE[person_index])
    for short, long in RENAMED.items():
        row[long] = row.pop(short)
    row["dc_nouvellecolonne"] = "x"
    row.update(values)
    return row


def _rows(url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    engine = get_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(sql), params)]
    finally:
        engine.dispose()


@pytest.fixture
def db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("KAIROS_PSEUDONYM_KEY", PSEUDONYM_KEY.decode())
    engine = get_engine(db_url)
    migrate(engine)
    insert_session(engine, SESSION_A, SIRET_A, SIRET_M)
    insert_session(engine, SESSION_M, SIRET_M, SIRET_M)
    insert_session(engine, SESSION_BAD, BAD_CHECK, SIRET_M)  # loaded as written by the offer
    engine.dispose()
    return db_url


def _enrolment(url: str, person_index: int) -> dict[str, Any]:
    local = PSEUDO.pseudonym("local", PEOPLE[person_index].local_id)
    [row] = _rows(
        url,
        "SELECT e.*, k.carif_session_numero AS linked FROM enrolment e"
        " LEFT JOIN kairos_session k ON k.id = e.kairos_session_id WHERE e.candidate = :c",
        c=local,
    )
    return row


def test_a_real_training_plan_export_loads(db: str, tmp_path: Path) -> None:
    file = tmp_path / "plans.csv"
    file.write_bytes(
        render(
            REAL_HEADER,
            [
                _real(0),  # linked by the dispensateur SIRET, read from the real column name
                _real(1, dc_siretorganismeformateur="NULL", dc_numeroicsession=SESSION_M),
                _real(2, dc_siretorganismeformateur="00000000000000", dc_numeroicsession=SESSION_M),
                _real(
                    3,
                    dd_datedebutplanformation="2018-05-22 00:00:00.0",
                    dd_datefinplanformation="2018-11-30 00:00:00.0",
                ),
                _real(4, dc_siretorganismeformateur=BAD_CHECK, dc_numeroicsession=SESSION_BAD),
                _real(5, dc_siretorganismeformateur=BAD_CHECK, dc_numeroicsession="SE_00077777"),
                _real(6, dc_siretorganismeformateur="4482037150"),  # not a SIRET at all
            ],
        )
    )
    result = ingest_export(file, kind="training-plans", db_url=db)
    assert result.counts["lines_read"] == 7
    assert result.counts["quarantined"] == 1
    assert result.counts["siret_absent_placeholder"] == 2
    assert result.counts["siret_check_failed"] == 2

    first = _enrolment(db, 0)
    assert (first["linked"], first["link_method"], first["dispensateur_siret"]) == (
        SESSION_A,
        "dispensateur",
        SIRET_A,
    )
    for index in (1, 2):  # NULL / zeros: no dispensateur SIRET, the responsable's links
        row = _enrolment(db, index)
        assert (row["linked"], row["link_method"]) == (SESSION_M, "responsable"), index
    dated = _enrolment(db, 3)
    assert str(dated["planned_start"])[:10] == "2018-05-22"
    assert str(dated["planned_end"])[:10] == "2018-11-30"
    # A check-digit failure that names a session we hold, exactly, links to it...
    bad = _enrolment(db, 4)
    assert (bad["linked"], bad["dispensateur_siret"]) == (SESSION_BAD, BAD_CHECK)
    # ...and one that names none is kept, unmatched, with the SIRET as written.
    unmatched = _enrolment(db, 5)
    assert unmatched["kairos_session_id"] is None
    assert unmatched["dispensateur_siret"] == BAD_CHECK
    [reason] = _rows(db, "SELECT path, reasons FROM quarantine WHERE run_id = :r", r=result.run_id)
    assert reason["path"] == "dc_siretformateur"
    assert "10 digits" in reason["reasons"]


def test_both_column_names_in_one_file(db: str, tmp_path: Path) -> None:
    """A file with the short and the long name: the contract's own column is used."""
    header = (*TRAINING_PLANS_HEADER, "dc_siretorganismeformateur")
    row = training_plan(PEOPLE[0])
    row["dc_siretorganismeformateur"] = SIRET_M
    file = tmp_path / "both.csv"
    file.write_bytes(render(header, [row]))
    result = ingest_export(file, kind="training-plans", db_url=db)
    assert result.counts["linked"] == 1
    assert _enrolment(db, 0)["dispensateur_siret"] == SIRET_A
