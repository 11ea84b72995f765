"""`kairos-sync check` whose database connections are terminated mid-run (PostgreSQL).

The check runs as a real process (`kill_driver.py check …`), paused at a known statement
(a SQLAlchemy statement hook: no function of the runner is patched); the test terminates
backends with `pg_terminate_backend`, as an administrator or a failover would, then lets
the process go on. Before this hardening the command ended with a traceback at the
advisory unlock (exit 1, no output) while `run_ledger` and `quality_check_run` said
`succeeded`: the run lock had been lost mid-run, so another run of the scope could have
overlapped it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from quality_data import AS_OF, QualityData
from rel_helpers import cli_env, query, run_cli
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

HERE = Path(__file__).resolve().parent
# The statement that records the run's success (the run's last transaction).
SUCCESS_UPDATE = "UPDATE quality_check_run SET status = 'succeeded'"
UNLOCK = "pg_advisory_unlock"

pytestmark = pytest.mark.postgres


@pytest.fixture
def data(postgres_url: str) -> Iterator[QualityData]:
    db = QualityData(postgres_url)
    db.session(carif_session_numero="blocked")  # flagged: the run has flags to store
    yield db
    db.dispose()


def _terminate(url: str, which: Literal["idle", "all"]) -> int:
    """Terminate the backends of the test's database: all of them, or the idle ones only
    (the run lock's connection and the pooled ones, not the one inside a transaction)."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            return len(
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :db AND pid <> pg_backend_pid() "
                        "AND (:all OR state = 'idle')"
                    ),
                    {"db": make_url(url).database, "all": which == "all"},
                ).all()
            )
    finally:
        engine.dispose()


def _check_interrupted_at(
    url: str, tmp_path: Path, statement: str, which: Literal["idle", "all"]
) -> subprocess.CompletedProcess[str]:
    """Run `check --format json`, pause it before `statement`, terminate backends, go on."""
    args = ["check", "--as-of", AS_OF.isoformat(), "--format", "json", "--db", url]
    return _interrupted_at(args, url, tmp_path, statement, which)


def _interrupted_at(
    args: list[str], url: str, tmp_path: Path, statement: str, which: Literal["idle", "all"]
) -> subprocess.CompletedProcess[str]:
    """Run the command `args`, pause it before `statement`, terminate backends, go on."""
    marker, resume = tmp_path / "paused", tmp_path / "resume"
    env = cli_env(
        KAIROS_PAUSE_MARKER=str(marker),
        KAIROS_PAUSE_AT=statement,
        KAIROS_RESUME_FILE=str(resume),
    )
    process = subprocess.Popen(
        [sys.executable, str(HERE / "kill_driver.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, f"{args[0]} never reached the pause"
            time.sleep(0.05)
        assert _terminate(url, which) >= 1
        resume.touch()
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _runs(url: str) -> list[tuple[str, str | None, str]]:
    """(ledger status, ledger error, check-run status) of every check run, in order."""
    return [
        (row[0], row[1], row[2])
        for row in query(
            url,
            "SELECT l.status, l.error, q.status FROM run_ledger l "
            "JOIN quality_check_run q ON q.run_ledger_id = l.id ORDER BY l.id",
        )
    ]


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_lock_connection_terminated_mid_run_fails_the_run(
    data: QualityData, tmp_path: Path
) -> None:
    """The idle backends die (the run lock's among them) while the run is inside its last
    transaction: the work itself could go on, but the lock was gone, so the run must not
    say `succeeded`. It is recorded failed, its flags are removed, the command says why
    (exit 3, run failed), and the next run succeeds."""
    result = _check_interrupted_at(data.url, tmp_path, SUCCESS_UPDATE, "idle")
    line = _error_line(result)
    assert result.returncode == 3, result.stderr
    assert "run lock" in line and "server closed the connection" in line, line
    assert result.stdout == ""
    ((ledger_status, error, check_status),) = _runs(data.url)
    assert (ledger_status, check_status) == ("failed", "failed")
    assert error is not None and error.startswith("RunLockLost: ")
    assert query(data.url, "SELECT COUNT(*) FROM quality_check_result")[0][0] == 0
    again = run_cli("check", "--as-of", AS_OF.isoformat(), "--db", data.url)
    assert again.returncode == 0, again.stderr
    assert [(s, q) for s, _e, q in _runs(data.url)] == [
        ("failed", "failed"),
        ("succeeded", "succeeded"),
    ]


def test_every_connection_terminated_mid_run_fails_the_run(
    data: QualityData, tmp_path: Path
) -> None:
    """Every backend dies, the one running the run's last transaction too: the run is
    recorded failed on a new connection, the dead lock connection does not turn into a
    traceback at the unlock, and the command names the database (exit 1)."""
    result = _check_interrupted_at(data.url, tmp_path, SUCCESS_UPDATE, "all")
    line = _error_line(result)
    assert result.returncode == 1, result.stderr
    parsed = make_url(data.url)
    assert f"{parsed.host}:{parsed.port}/{parsed.database}" in line, line
    assert "terminating connection" in line or "server closed the connection" in line, line
    ((ledger_status, error, check_status),) = _runs(data.url)
    assert (ledger_status, check_status) == ("failed", "failed")
    assert error is not None and "OperationalError" in error
    assert query(data.url, "SELECT COUNT(*) FROM quality_check_result")[0][0] == 0


def test_connections_terminated_after_the_run_recorded_its_success(
    data: QualityData, tmp_path: Path
) -> None:
    """The run finished and committed under its lock; every backend dies just before the
    unlock. The server released the lock with the session: the unlock has nothing to do,
    the run's `succeeded` is true, and the command prints every flag (exit 0)."""
    result = _check_interrupted_at(data.url, tmp_path, UNLOCK, "all")
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stderr
    flags = json.loads(result.stdout)
    ((ledger_status, _error, check_status),) = _runs(data.url)
    assert (ledger_status, check_status) == ("succeeded", "succeeded")
    stored = query(data.url, "SELECT COUNT(*) FROM quality_check_result")[0][0]
    assert len(flags) == stored > 0


def test_a_load_whose_lock_connection_dies_is_not_recorded_succeeded(
    postgres_url: str, tmp_path: Path
) -> None:
    """The LHEO loader holds its source's lock the same way: when that connection dies
    while the load runs (the load's own connection, inside its transaction, survives), the
    server has released the lock, another load of the source may have started: the load
    rolls back and is recorded failed (exit 3), and the next one succeeds."""
    from samples.generator import write_offers

    offers = tmp_path / "offers.xml"
    write_offers(offers, formations=10, seed=5, lheo_version="2.3")
    args = ["load", str(offers), "--source", "sigma-occitanie", "--db", postgres_url]
    assert run_cli("migrate", "--db", postgres_url).returncode == 0
    # The pause: the load's own ledger line, inside its transaction.
    result = _interrupted_at(args, postgres_url, tmp_path, "UPDATE run_ledger SET status", "idle")
    line = _error_line(result)
    assert result.returncode == 3, result.stderr
    assert "run lock" in line, line
    ledger = query(postgres_url, "SELECT status, error FROM run_ledger ORDER BY id")
    assert [r[0] for r in ledger] == ["failed"] and ledger[0][1].startswith("RunLockLost: ")
    assert query(postgres_url, "SELECT COUNT(*) FROM kairos_session")[0][0] == 0
    again = run_cli("load", str(offers), "--source", "sigma-occitanie", "--db", postgres_url)
    assert again.returncode == 0, again.stderr
