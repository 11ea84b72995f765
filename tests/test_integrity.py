"""Integrity without a check per inserted row (migration 0008).

On PostgreSQL the loaded tables' run ids, the slots' key to their session and the version
tables' keys to their rows lost their foreign keys (the first load's largest database
cost). What the keys guaranteed must still hold: after real loads (first, changed with
closings and reopenings, reload) no reference names a missing row; a planted orphan is
found and named; the referenced tables refuse DELETE (and TRUNCATE); and migrating down to
0007 gives the keys and indexes back.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text
from test_history_snapshots import downgrade
from test_load import CONFIG, _drop_formation, _set_etat, edited, generated, scalar
from typer.testing import CliRunner

from core.db import get_engine, migrate
from core.integrity import UNCHECKED_REFERENCES, orphan_references
from pipelines.cli import app
from pipelines.load import load_snapshot
from quality_checks.runner import run_checks

runner = CliRunner()
GUARDED = ("run_ledger", "kairos_session", "recruitment_slot")


def orphans(url: str) -> dict[str, int]:
    engine = get_engine(url)
    try:
        with engine.connect() as conn:
            return orphan_references(conn)
    finally:
        engine.dispose()


def _load_history(db: str, tmp_path: Path) -> None:
    """A first load, a snapshot with a change and a vanished formation, the first again
    (reopenings), the same file (noop), then a check run."""
    offers = generated(tmp_path)
    changed = edited(offers, tmp_path / "changed.xml", _set_etat("SE7-3-1-1", "3"))
    changed = edited(changed, tmp_path / "changed2.xml", _drop_formation("F7-5"))
    for path in (offers, changed, offers, offers):
        load_snapshot(path, source="occ", config=CONFIG, db_url=db, fast_path=False)
    run = run_checks(db, date(2026, 11, 23))  # flags keyed by their check run
    assert run.flags_total > 0


def test_loads_leave_no_orphan_reference(db: str, tmp_path: Path) -> None:
    _load_history(db, tmp_path)
    for kind in ("close", "reopen", "update"):
        assert scalar(
            db, f"SELECT COUNT(*) FROM kairos_session_version WHERE change_kind = '{kind}'"
        )
    assert scalar(db, "SELECT COUNT(*) FROM kairos_session_version WHERE valid_to_run_id > 0") > 0
    found = orphans(db)
    assert set(found) == {f"{r.table}.{r.column}" for r in UNCHECKED_REFERENCES}
    assert found == dict.fromkeys(found, 0)
    result = runner.invoke(app, ["integrity", "--db", db])
    assert result.exit_code == 0, result.output
    assert f"{len(found)} references checked, no orphan" in result.output


def test_a_planted_orphan_is_found_and_named(db: str, tmp_path: Path) -> None:
    _load_history(db, tmp_path)
    engine = get_engine(db)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "sqlite":  # SQLite keeps its foreign keys: plant past them
                conn.exec_driver_sql("PRAGMA foreign_keys = OFF")
            conn.execute(
                text(
                    "INSERT INTO kairos_session_version (kairos_session_id, version_no, "
                    "change_kind, valid_from_run_id, valid_from, content_hash) "
                    "VALUES (987654321, 1, 'insert', 123456789, CURRENT_TIMESTAMP, 'x')"
                )
            )
            conn.execute(text("UPDATE kairos_session SET closed_run_id = 555 WHERE id = 1"))
            conn.execute(text("UPDATE quality_check_result SET check_run_id = 777 WHERE id = 1"))
    finally:
        engine.dispose()
    found = {reference: count for reference, count in orphans(db).items() if count}
    assert found == {
        "kairos_session_version.kairos_session_id": 1,
        "kairos_session_version.valid_from_run_id": 1,
        "kairos_session.closed_run_id": 1,
        "quality_check_result.check_run_id": 1,
    }
    result = runner.invoke(app, ["integrity", "--db", db])
    assert result.exit_code == 6  # findings: not 1, which says the database failed
    assert "4 references name rows that do not exist" in result.output
    assert re.search(r"kairos_session_version.kairos_session_id +1\n", result.output)


def _rows(url: str) -> dict[str, int]:
    return {table: scalar(url, f"SELECT COUNT(*) FROM {table}") for table in GUARDED}


@pytest.mark.parametrize("table", GUARDED)
def test_referenced_tables_refuse_deletes(db: str, tmp_path: Path, table: str) -> None:
    load_snapshot(generated(tmp_path), source="occ", config=CONFIG, db_url=db)
    before = _rows(db)
    assert all(before.values())
    engine = get_engine(db)
    try:
        with pytest.raises(Exception, match="rows are never deleted"), engine.begin() as conn:
            conn.execute(text(f"DELETE FROM {table} WHERE id = (SELECT MIN(id) FROM {table})"))
        if engine.dialect.name == "postgresql":
            with pytest.raises(Exception, match="rows are never deleted"), engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {table} CASCADE"))
    finally:
        engine.dispose()
    assert _rows(db) == before


def _schema(url: str) -> dict[str, Any]:
    """Foreign keys (referencing column → table) and index names of the loaded tables."""
    engine = get_engine(url)
    try:
        inspector = inspect(engine)
        tables = sorted({r.table for r in UNCHECKED_REFERENCES})
        return {
            table: (
                sorted(
                    (tuple(fk["constrained_columns"]), fk["referred_table"])
                    for fk in inspector.get_foreign_keys(table)
                ),
                sorted(str(ix["name"]) for ix in inspector.get_indexes(table)),
            )
            for table in tables
        }
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_migration_0008_down_gives_the_keys_back(postgres_url: str, tmp_path: Path) -> None:
    engine = get_engine(postgres_url)
    migrate(engine, "0007")
    at_0007 = _schema(postgres_url)
    migrate(engine, "head")
    at_head = _schema(postgres_url)
    # Head: no foreign key left on the loaded tables.
    assert [fks for fks, _ in at_head.values() if fks] == []
    assert "ix_kairos_session_version_open" not in at_head["kairos_session_version"][1]
    load_snapshot(generated(tmp_path), source="occ", config=CONFIG, db_url=postgres_url)
    downgrade(engine, "0007")
    try:
        assert _schema(postgres_url) == at_0007
        assert ((("first_seen_run_id",), "run_ledger")) in at_0007["kairos_session"][0]
        with pytest.raises(Exception, match="foreign key"), engine.begin() as conn:
            conn.execute(text("UPDATE kairos_session SET closed_run_id = 555 WHERE id = 1"))
            conn.execute(text("UPDATE quality_check_result SET check_run_id = 777 WHERE id = 1"))
        with engine.begin() as conn:  # no guard any more (the keys restrict instead)
            conn.execute(text("DELETE FROM run_ledger WHERE id = -1"))
    finally:
        migrate(engine, "head")
        engine.dispose()
    assert _schema(postgres_url) == at_head
    assert orphans(postgres_url) == dict.fromkeys(orphans(postgres_url), 0)
