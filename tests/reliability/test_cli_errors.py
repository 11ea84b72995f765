"""One error path for every command (hardening: no traceback, no half-written report).

Every `kairos-sync` command that touches the database ends, when it cannot use it, with
one `error:` line on stderr naming the database (host and database, or the SQLite file;
never the password) and the exit code of its failure class (README, "Exit codes"). Each
case runs the real command in a subprocess, as cron or Airflow would, so that a Python
traceback would show in its output.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from kairos_export_fixtures import FIXTURES_DIR
from rel_helpers import CONFIG_YAML, cli_env, generated, query, run_cli
from sqlalchemy.engine import make_url

from core.db import PROJECT_ROOT
from pipelines.cli_errors import ExitCode

DB_SECRET = "db-S3cret-Pw-c41e"  # grepped for in every output
PSEUDONYM_KEY = "pseudo-key-for-cli-errors-0123456789"
DATABASE_ERROR = ExitCode.DATABASE
BAD_INPUT = ExitCode.BAD_INPUT


def _commands(tmp_path: Path) -> dict[str, list[str]]:
    """Every command that opens the database, with valid arguments apart from --db."""
    config = tmp_path / "sources.yaml"
    config.write_text(CONFIG_YAML, encoding="utf-8")
    offers = generated(tmp_path, formations=2)
    adherents = str(FIXTURES_DIR / "adherents_utf8_pipe.csv")
    return {
        "check": ["check", "--as-of", "2026-11-23"],
        "report": ["report", "--as-of", "2026-11-23", "--out", str(tmp_path / "rapport")],
        "export sessions": ["export", "sessions"],
        "export enrolments": ["export", "enrolments"],
        "migrate": ["migrate"],
        "integrity": ["integrity"],
        "load": ["load", str(offers), "--source", "occ", "--config", str(config)],
        "ingest-kairos": ["ingest-kairos", adherents, "--kind", "adherents"],
    }


def _run_all(commands: dict[str, list[str]], url: str) -> dict[str, Any]:
    env = cli_env(KAIROS_PSEUDONYM_KEY=PSEUDONYM_KEY)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            name: pool.submit(run_cli, *args, "--db", url, env=env)
            for name, args in commands.items()
        }
        return {name: future.result() for name, future in futures.items()}


def _assert_one_line(name: str, result: Any, code: int, *fragments: str) -> str:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, (name, output)
    assert result.returncode == code, (name, output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (name, result.stderr)
    for fragment in fragments:
        assert fragment in lines[0], (name, fragment, lines[0])
    assert DB_SECRET not in output, (name, output)
    return lines[0]


@pytest.fixture
def server(postgres_admin_url: str) -> tuple[str, int]:
    """Host and port of the real test server (a refused role needs a server to refuse it)."""
    parsed = make_url(postgres_admin_url)
    return str(parsed.host or "127.0.0.1"), int(parsed.port or 5432)


@pytest.mark.postgres
def test_unreachable_server_and_refused_role(tmp_path: Path, server: tuple[str, int]) -> None:
    """Nothing listens (port 1), then the server refuses the role: every command says
    which database failed, in one line, exit 1; the password of the URL never appears."""
    host, port = server
    commands = _commands(tmp_path)
    cases = (
        (f"postgresql+psycopg2://kairos:{DB_SECRET}@127.0.0.1:1/x", "127.0.0.1:1/x", "refused"),
        (
            f"postgresql+psycopg2://nosuchrole:{DB_SECRET}@{host}:{port}/test",
            f"{host}:{port}/test",
            'role "nosuchrole" does not exist',
        ),
    )
    for url, where, why in cases:
        for name, result in _run_all(commands, url).items():
            _assert_one_line(name, result, DATABASE_ERROR, where, why)
    assert not (tmp_path / "rapport").exists()


def test_unopenable_sqlite_file(tmp_path: Path) -> None:
    """SQLite's equivalent of an unreachable server: a file in a folder that does not
    exist. Same one line, naming the file, exit 1."""
    missing = tmp_path / "no-such-folder" / "kairos.sqlite"
    for name, result in _run_all(_commands(tmp_path), f"sqlite:///{missing}").items():
        _assert_one_line(name, result, DATABASE_ERROR, str(missing), "unable to open")


def test_malformed_database_url(tmp_path: Path) -> None:
    """An unparseable URL is bad input (exit 2); it is not repeated (it may hold a
    password)."""
    for url in ("not a url", f"postgresql+psycopg2://kairos:{DB_SECRET}@127.0.0.1:notaport/x"):
        for name, result in _run_all(_commands(tmp_path), url).items():
            line = _assert_one_line(name, result, BAD_INPUT, "invalid database URL")
            assert url not in line


def test_a_folder_given_as_the_file_is_refused(db: str, tmp_path: Path) -> None:
    """`load DIR` (and the other commands reading a file) refuse a folder as bad input
    before anything is written: no ledger row, no traceback (before: IsADirectoryError)."""
    folder = tmp_path / "offres"
    folder.mkdir()
    config = tmp_path / "sources.yaml"
    config.write_text(CONFIG_YAML, encoding="utf-8")
    result = run_cli("load", str(folder), "--source", "occ", "--config", str(config), "--db", db)
    _assert_one_line("load", result, BAD_INPUT, str(folder), "is a directory")
    assert query(db, "SELECT COUNT(*) FROM run_ledger")[0][0] == 0
    result = run_cli("validate", str(folder))
    _assert_one_line("validate", result, BAD_INPUT, str(folder))


def test_unknown_source_is_refused_by_check_and_report(db: str, tmp_path: Path) -> None:
    """`check --source X` / `report --source X` with X not configured: refused like `load`
    (the message names the sources file and the configured sources), nothing stored, no
    report written (before: exit 0, a succeeded check run, "0 flags")."""
    config = tmp_path / "sources.yaml"
    config.write_text(CONFIG_YAML, encoding="utf-8")
    out = tmp_path / "rapport"
    as_of = ["--as-of", "2026-11-23", "--db", db]
    runs = {
        "check": run_cli("check", *as_of, "--source", "nope", "--config", str(config)),
        "report": run_cli(
            "report", *as_of, "--source", "nope", "--config", str(config), "--out", str(out)
        ),
    }
    for name, result in runs.items():
        _assert_one_line(name, result, BAD_INPUT, str(config), "nope", "nor, occ")
    # Without --config: the default sources file, and its sources.
    result = run_cli("check", *as_of, "--source", "nope")
    _assert_one_line("check", result, BAD_INPUT, "sources.yaml", "smf-normandie")
    assert query(db, "SELECT COUNT(*) FROM run_ledger")[0][0] == 0
    assert query(db, "SELECT COUNT(*) FROM quality_check_run")[0][0] == 0
    assert not out.exists()
    # A configured source still runs.
    result = run_cli("check", *as_of, "--source", "occ", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert query(db, "SELECT status FROM quality_check_run") == [("succeeded",)]


def test_the_readme_documents_every_exit_code() -> None:
    """The README's table is the contract scripts and Airflow rely on: same codes, same
    classes as `ExitCode`."""
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| (\d+) \| ([a-z ]+) \|", section, flags=re.MULTILINE))
    assert {int(code): name for code, name in rows.items()} == {
        int(code): code.name.lower().replace("_", " ") for code in ExitCode
    }
