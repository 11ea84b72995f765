"""Schema migrations started at once on a fresh database (pipelines/db.py `migrate`), on
SQLite and PostgreSQL.

The first night runs on a fresh database with every source in parallel, and each step
migrates first: two unserialised upgrades both saw no schema and both created the tables
("table run_ledger already exists"), failing one source's load (seen in the Airflow
scheduler check), or waited on each other without end on SQLite.
"""

from __future__ import annotations

import threading

from sqlalchemy import text

from pipelines.db import get_engine, migrate


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
