"""Schema migrations (core/db.py `migrate`), on SQLite and PostgreSQL: started at once on
a fresh database, in threads and in processes; and the other steps refusing to run on a
schema that is not current.

The first night runs on a fresh database with every source in parallel, and each step
migrates first: two unserialised upgrades both saw no schema and both created the tables
("table run_ledger already exists"), failing one source's load (seen in the Airflow
scheduler check), or waited on each other without end on SQLite.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from core.db import (
    SchemaNotCurrentError,
    get_engine,
    head_revision,
    migrate,
    require_current_schema,
    schema_revision,
)
from samples.generator import write_offers


def test_concurrent_migrations_of_a_fresh_database(db_url: str) -> None:
    errors: list[str] = []

    def upgrade() -> None:
        engine = get_engine(db_url)
        try:
            migrate(engine)
        except Exception as exc:  # collected: the assertion below says which
            errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
        finally:
            engine.dispose()

    threads = [threading.Thread(target=upgrade, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a migration never ended"
    assert errors == []
    engine = get_engine(db_url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
            ledger = conn.execute(text("SELECT COUNT(*) FROM run_ledger")).scalar_one()
    finally:
        engine.dispose()
    assert len(versions) == 1 and ledger == 0


def test_concurrent_migrate_commands_in_separate_processes(db_url: str) -> None:
    """Three `kairos-sync migrate` processes at once (the first night's mapped sources)."""
    command = [sys.executable, "-m", "pipelines.cli", "migrate", "--db", db_url]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=180) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], outputs
    assert all("schema up to date" in out for out, _err in outputs)
    engine = get_engine(db_url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    finally:
        engine.dispose()
    assert versions == [head_revision()]


def test_steps_refuse_a_database_not_migrated_and_name_the_command(
    db_url: str, tmp_path: Path
) -> None:
    """Only `migrate` changes the schema; every other step checks it and says what to run."""
    from typer.testing import CliRunner

    from pipelines.cli import app
    from pipelines.kairos_exports.ingest import ingest_export
    from quality_checks.runner import run_checks

    offers = tmp_path / "offres.xml"
    write_offers(offers, formations=1, seed=1, lheo_version="2.2")
    load = ["load", str(offers), "--source", "smf-normandie", "--db", db_url]
    result = CliRunner().invoke(app, load)
    assert result.exit_code == 1
    assert "has no schema" in result.output
    assert "run `kairos-sync migrate`" in result.output
    with pytest.raises(SchemaNotCurrentError, match="kairos-sync migrate"):
        ingest_export(tmp_path / "adherents.csv", kind="adherents", db_url=db_url)
    with pytest.raises(SchemaNotCurrentError, match="kairos-sync migrate"):
        run_checks(db_url, datetime.date(2026, 11, 3))
    engine = get_engine(db_url)
    try:
        assert schema_revision(engine) is None  # nothing was created on the way
        # An older schema is refused as well, with the revision it is at.
        migrate(engine, "0001")
        with pytest.raises(SchemaNotCurrentError, match="is at revision 0001"):
            require_current_schema(engine)
        migrate(engine)
        require_current_schema(engine)
    finally:
        engine.dispose()
    result = CliRunner().invoke(app, load)
    assert result.exit_code == 0, result.output
