"""Fixtures of the reliability and security tests (issue 8); helpers in rel_helpers.py.

Every test that touches a database takes `db` (migrated, from the `db_url` fixture of
tests/conftest.py): it runs once on SQLite and once on a fresh real PostgreSQL database.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rel_helpers import CONFIG_YAML

from pipelines.db import get_engine, migrate


@pytest.fixture
def db(db_url: str) -> str:
    engine = get_engine(db_url)
    migrate(engine)
    engine.dispose()
    return db_url


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text(CONFIG_YAML, encoding="utf-8")
    return path
