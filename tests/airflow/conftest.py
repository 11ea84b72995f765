"""Airflow test environment: a throw-away AIRFLOW_HOME with a SQLite metadata database.

The environment must be set before anything imports airflow (its configuration is read
once, at import), so it is set here at module level; pytest imports this conftest before
the test modules of this folder. The repository's airflow.cfg is used (AIRFLOW_CONFIG), so
the tests also check that file; only the metadata DB and logs are redirected to tmp.
`airflow db migrate` runs once per session, in a subprocess (≈ 7 s).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow_project import Project

PROJECT_ROOT = Path(__file__).resolve().parents[2]
_HOME = Path(tempfile.mkdtemp(prefix="kairos-airflow-test-"))

os.environ.update(
    {
        "KAIROS_PROJECT_ROOT": str(PROJECT_ROOT),
        "AIRFLOW_HOME": str(_HOME),
        "AIRFLOW_CONFIG": str(PROJECT_ROOT / "airflow.cfg"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_HOME / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(_HOME / "logs"),
        # dag.test() runs tasks in-process; no executor, no api-server.
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
    }
)
if "airflow" in sys.modules:  # pragma: no cover - a guard for the ordering assumption
    raise RuntimeError("airflow was imported before tests/airflow/conftest.py set its env")


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """The migrated metadata database (one per test session)."""
    airflow = PROJECT_ROOT / ".venv" / "bin" / "airflow"
    command = [str(airflow)] if airflow.exists() else [sys.executable, "-m", "airflow"]
    result = subprocess.run(
        [*command, "db", "migrate"], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return _HOME / "airflow.db"


SOURCES_YAML = """\
sources:
  smf-normandie:
    lheo_version: "2.3"
    guichet_unique:
      - extra: {{info: programme, value: "#Avenir"}}
    snapshot:
      location: {root}/sources/smf-normandie
    report:
      recipients: [region-normandie@example.org]
  sigma-occitanie:
    lheo_version: "2.3"
    snapshot:
      location: {root}/sources/sigma-occitanie
    report:
      recipients: [region-occitanie@example.org]
"""


def _reset_airflow_runs() -> None:
    """Forget the runs, asset events and backfills of earlier tests (same metadata DB):
    each test starts like a fresh deployment, whatever ran before it."""
    from airflow.models.asset import AssetDagRunQueue, AssetEvent
    from airflow.models.backfill import Backfill, BackfillDagRun
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        for model in (AssetDagRunQueue, AssetEvent, BackfillDagRun, DagRun, Backfill):
            session.query(model).delete(synchronize_session=False)


def _project(root: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Project:
    _reset_airflow_runs()
    config = root / "sources.yaml"
    root.mkdir()
    config.write_text(textwrap.dedent(SOURCES_YAML.format(root=root)))
    for name in ("smf-normandie", "sigma-occitanie"):
        (root / "sources" / name).mkdir(parents=True)
    project = Project(
        root=root,
        db_url=db_url,
        landing=root / "landing",
        sources=root / "sources",
        config=config,
        reports=root / "reports",
    )
    monkeypatch.setenv("KAIROS_DATABASE_URL", db_url)
    monkeypatch.setenv("KAIROS_SOURCES_CONFIG", str(config))
    monkeypatch.setenv("KAIROS_LANDING_ZONE", str(project.landing))
    monkeypatch.setenv("KAIROS_REPORTS_DIR", str(project.reports))
    monkeypatch.setenv("KAIROS_ALERTS_DIR", str(project.reports.parent / "alerts"))
    monkeypatch.setenv("KAIROS_PSEUDONYM_KEY", "test-key-" + "x" * 40)
    monkeypatch.delenv("KAIROS_ALERT_TO", raising=False)
    return project


@pytest.fixture
def project(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, airflow_db: Path
) -> Project:
    """Two sources with folders, a landing zone, a project DB: SQLite, then PostgreSQL."""
    return _project(tmp_path / "project", db_url, monkeypatch)


@pytest.fixture
def sqlite_project(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, airflow_db: Path
) -> Project:
    """The same on SQLite only (for the tests whose point is not the database)."""
    return _project(tmp_path / "project", sqlite_url, monkeypatch)


@pytest.fixture
def dags() -> dict[str, Any]:
    # Parsed per test: dag.test(run_conf=…) leaves the conf in the DAG object's params
    # (observed with Airflow 3.3), which would leak one test's form into the next.
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(PROJECT_ROOT / "dags"))
    assert bag.import_errors == {}
    return dict(bag.dags)


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """A loopback SMTP server (aiosmtpd) collecting messages; the report's settings point to it."""
    import socket
    from email import message_from_bytes, policy

    from aiosmtpd.controller import Controller

    received: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            message = message_from_bytes(envelope.content, policy=policy.default)
            received.append((list(envelope.rcpt_tos), message))
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("KAIROS_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("KAIROS_SMTP_PORT", str(port))
    monkeypatch.setenv("KAIROS_SMTP_FROM", "kairos-sync@example.org")
    try:
        yield received
    finally:
        controller.stop()
