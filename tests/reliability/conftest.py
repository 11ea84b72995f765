"""Fixtures of the reliability and security tests; helpers in rel_helpers.py.

Every test that touches a database takes `db` (migrated, tests/conftest.py): it runs once on
SQLite and once on a fresh real PostgreSQL database.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rel_helpers import CONFIG_YAML


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text(CONFIG_YAML, encoding="utf-8")
    return path
