"""Shared fixtures: databases (SQLite and PostgreSQL, parametrised), paths to ../shared.

PostgreSQL: DATABASE_URL when set, else the local server on 127.0.0.1:5432 if it answers,
else the tests are skipped with a loud reason. With KAIROS_REQUIRE_POSTGRES=1 (set by
.ci/run) a missing server is an error, never a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from core.db import get_engine, migrate

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = PROJECT_ROOT.parent / "shared"
LOCAL_POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def _postgres_admin_url() -> str | None:
    url = os.environ.get("DATABASE_URL") or LOCAL_POSTGRES
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any failure to reach the server decides skip vs error
        reason = f"PostgreSQL not reachable at {make_url(url).render_as_string()}: {exc}"
        if os.environ.get("KAIROS_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"KAIROS_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(f"SKIPPING POSTGRESQL TESTS — {reason}. Set DATABASE_URL to run them.")
    return url


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    url = _postgres_admin_url()
    assert url is not None
    return url


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    admin = create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    name = f"kairos_t_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'kairos.sqlite'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each test using it runs once on SQLite and once on PostgreSQL."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def db(db_url: str) -> str:
    """`db_url` with the schema migrated to head (each dialect, a fresh database)."""
    engine = get_engine(db_url)
    migrate(engine)
    engine.dispose()
    return db_url


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED_DIR.is_dir():
        pytest.skip("../shared is absent: reference corpus tests skipped")
    return SHARED_DIR


@pytest.fixture
def second_db(request: pytest.FixtureRequest, db_url: str, tmp_path: Path) -> str:
    """Another empty, migrated database of the same kind as `db_url`."""
    if db_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'second.sqlite'}"
    else:
        url = str(request.getfixturevalue("postgres_url_2"))
    from core.db import get_engine, migrate

    engine = get_engine(url)
    migrate(engine)
    engine.dispose()
    return url


@pytest.fixture
def postgres_url_2(postgres_admin_url: str) -> Iterator[str]:
    name = f"kairos_test2_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
