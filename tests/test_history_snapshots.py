"""History without a second copy of every row (migration 0007).

The current version of a session or slot has no snapshot of its own: the row is its
content. A trigger copies the old row into the current version just before an UPDATE
changes it. These tests hold that to the old contract — every ended version keeps exactly
the content its row had while it was current, and the as-of and last-run queries answer as
before — on SQLite and PostgreSQL, for the loader and for a hand-written UPDATE.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from test_load import CONFIG, _drop_formation, _set_etat, edited, generated, query, scalar

from core.db import SQL_DIR, get_engine, migrate
from core.history import (
    _NOT_IN_SNAPSHOT,
    VERSIONING,
    changes_in_last_run,
    sessions_as_of,
    slots_as_of,
    snapshot_expression,
    snapshot_trigger_name,
    table_columns,
)
from pipelines.load import load_snapshot


def live_snapshots(url: str, table: str) -> dict[int, str]:
    """id → the row's content as the snapshot JSON, built in SQL (what eager history stored)."""
    engine = get_engine(url)
    try:
        with engine.connect() as conn:
            expression = snapshot_expression(
                conn.dialect.name, table_columns(conn, table), alias="t"
            )
            rows = conn.execute(text(f"SELECT t.id, {expression} FROM {table} AS t"))
            return {int(row[0]): str(row[1]) for row in rows}
    finally:
        engine.dispose()


def test_ended_versions_keep_the_content_the_row_had(db: str, tmp_path: Path) -> None:
    offers = generated(tmp_path)
    load_snapshot(offers, source="occ", config=CONFIG, db_url=db)
    # A first load writes no JSON at all: every version is current and the row is its content.
    for version_table, _ in VERSIONING.values():
        assert scalar(db, f"SELECT COUNT(*) FROM {version_table}") > 0
        assert scalar(db, f"SELECT COUNT(*) FROM {version_table} WHERE snapshot IS NOT NULL") == 0
    before = {table: live_snapshots(db, table) for table in VERSIONING}
    between = datetime.now(UTC)

    changed = edited(offers, tmp_path / "changed.xml", _set_etat("SE7-3-1-1", "3"))
    changed = edited(changed, tmp_path / "changed2.xml", _drop_formation("F7-5"))
    load_snapshot(changed, source="occ", config=CONFIG, db_url=db)

    for table, (version_table, fk) in VERSIONING.items():
        ended = query(
            db,
            f"SELECT {fk}, snapshot FROM {version_table} WHERE valid_to_run_id IS NOT NULL",
        )
        assert ended, table  # the change and the closings ended versions
        for entity_id, snapshot in ended:
            assert snapshot == before[table][entity_id], (table, entity_id)
        # Current versions still point at the row; rows written only by run 1 kept theirs.
        assert (
            scalar(
                db,
                f"SELECT COUNT(*) FROM {version_table} WHERE valid_to_run_id IS NULL "
                "AND snapshot IS NOT NULL",
            )
            == 0
        )

    with get_engine(db).connect() as conn:
        then = {r["kairos_session_id"]: r["snapshot"] for r in sessions_as_of(conn, "occ", between)}
        now = {
            r["kairos_session_id"]: r["snapshot"]
            for r in sessions_as_of(conn, "occ", datetime.now(UTC))
        }
        slots_then = slots_as_of(conn, "occ", between)
        changes = changes_in_last_run(conn, "occ")
    live = live_snapshots(db, "kairos_session")
    assert then == {i: before["kairos_session"][i] for i in then}
    assert len(then) == len(before["kairos_session"])
    assert now == {i: live[i] for i in now} and len(now) < len(then)  # F7-5 closed
    assert {r["recruitment_slot_id"]: r["snapshot"] for r in slots_then} == {
        i: before["recruitment_slot"][i] for i in {r["recruitment_slot_id"] for r in slots_then}
    }
    update = next(c for c in changes if c["carif_session_numero"] == "SE7-3-1-1")
    assert update["change_kind"] == "update"
    assert json.loads(update["previous_snapshot"])["etat_recrutement"] != 3
    assert json.loads(update["snapshot"])["etat_recrutement"] == 3


def test_a_hand_written_update_keeps_the_old_content(db: str, tmp_path: Path) -> None:
    """The trigger covers every writer, not only the loader: a correction made in SQL (and
    never versioned) still leaves the current version with the content it had."""
    load_snapshot(generated(tmp_path), source="occ", config=CONFIG, db_url=db)
    session_id = scalar(db, "SELECT MIN(id) FROM kairos_session")
    before = live_snapshots(db, "kairos_session")[session_id]
    engine = get_engine(db)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE kairos_session SET intitule = 'corrigé à la main' WHERE id = :id"),
            {"id": session_id},
        )
        conn.execute(  # a second write keeps the first old content, not the corrected one
            text("UPDATE kairos_session SET intitule = 'encore' WHERE id = :id"),
            {"id": session_id},
        )
    engine.dispose()
    stored = scalar(
        db,
        "SELECT snapshot FROM kairos_session_version WHERE kairos_session_id = :id "
        "AND valid_to_run_id IS NULL",
        id=session_id,
    )
    assert stored == before and "corrigé" not in stored
    others = scalar(db, "SELECT COUNT(*) FROM kairos_session_version WHERE snapshot IS NOT NULL")
    assert others == 1


def downgrade(engine: Any, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(SQL_DIR / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def _trigger_definitions(url: str) -> dict[str, str]:
    engine = get_engine(url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                rows = conn.execute(
                    text(
                        "SELECT t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t "
                        "WHERE NOT t.tgisinternal"
                    )
                )
            else:
                rows = conn.execute(
                    text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
                )
            return {str(name): str(sql) for name, sql in rows}
    finally:
        engine.dispose()


def test_every_versioned_table_has_its_trigger_over_every_column(db: str) -> None:
    """A migration that adds a column to a versioned table must install the triggers again
    (SQLite's lists the columns): this fails until it does."""
    triggers = _trigger_definitions(db)
    engine = get_engine(db)
    with engine.connect() as conn:
        dialect = conn.dialect.name
        columns = {table: table_columns(conn, table) for table in VERSIONING}
    engine.dispose()
    for table in VERSIONING:
        definition = triggers[snapshot_trigger_name(table)]
        assert f" ON {table}" in definition or f" ON public.{table}" in definition
        assert "UPDATE" in definition.upper()
        if dialect == "sqlite":
            for column in columns[table]:
                if column not in _NOT_IN_SNAPSHOT:
                    assert f"OLD.{column})" in definition or f"OLD.{column}," in definition, (
                        table,
                        column,
                    )


def test_downgrade_writes_the_current_snapshots_back(db: str, tmp_path: Path) -> None:
    """Migration 0007 down: every version gets its snapshot (the row's content for current
    ones), the column is NOT NULL again and the triggers are gone; up again restores them."""
    load_snapshot(generated(tmp_path), source="occ", config=CONFIG, db_url=db)
    engine = get_engine(db)
    # The rows as 0007 left them (later revisions add columns, which their downgrade drops).
    downgrade(engine, "0008")
    expected: dict[str, dict[int, str]] = {t: live_snapshots(db, t) for t in VERSIONING}
    downgrade(engine, "0006")
    try:
        for table, (version_table, fk) in VERSIONING.items():
            rows: list[Any] = query(db, f"SELECT {fk}, snapshot FROM {version_table}")
            assert rows and all(snapshot == expected[table][i] for i, snapshot in rows)
        assert _trigger_definitions(db) == {}
        with pytest.raises(Exception, match=r"(?i)null"), engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO kairos_session_version (kairos_session_id, version_no, "
                    "change_kind, valid_from_run_id, valid_from, content_hash, snapshot) "
                    "SELECT id, 99, 'update', first_seen_run_id, CURRENT_TIMESTAMP, "
                    "content_hash, NULL FROM kairos_session LIMIT 1"
                )
            )
    finally:
        migrate(engine, "head")
        engine.dispose()
    assert {snapshot_trigger_name(t) for t in VERSIONING} <= set(_trigger_definitions(db))
