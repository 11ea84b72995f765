"""Security (docs/security.md): secrets never in logs, ledger, outputs or the repository; only
bound parameters in SQL; paths given by people stay in their folders.
"""

from __future__ import annotations

import ast
import datetime
import logging
import re
import subprocess
from pathlib import Path

import pytest
from kairos_export_fixtures import FIXTURES_DIR, SESSION_A, SIRET_A, SIRET_M, insert_session
from rel_helpers import CONFIG_YAML, cli_env, generated, ledger, query, run_cli
from sqlalchemy.engine import make_url

from core.db import PROJECT_ROOT, get_engine, migrate
from pipelines.fetch import PathOutsideAllowedFolderError, snapshot_from_param
from pipelines.kairos_exports import ingest_export
from pipelines.load import load_snapshot
from pipelines.orchestration import PlanError, plan_jobs
from pipelines.report_step import report_step

DB_SECRET = "db-S3cret-Pw-7f3a"  # test values, grepped for
SMTP_SECRET = "smtp-S3cret-Pw-91c2"
PSEUDONYM_SECRET = "pseudo-S3cret-Key-5e8d0b"
SECRETS = (DB_SECRET, SMTP_SECRET, PSEUDONYM_SECRET)


def _with_password(url: str) -> str:
    """The same database, with a password in the URL (the local server trusts; a real one
    would check it). SQLite URLs carry no password."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return url
    return parsed.set(password=DB_SECRET).render_as_string(hide_password=False)


def _dump_database(url: str) -> str:
    engine = get_engine(url)
    try:
        from sqlalchemy import inspect, text

        names = inspect(engine).get_table_names()
        with engine.connect() as conn:
            return "\n".join(
                repr(list(conn.execute(text(f"SELECT * FROM {name}"))))  # names from the schema
                for name in names
            )
    finally:
        engine.dispose()


@pytest.mark.slow  # ~10 s: the report imports Great Expectations, three CLI processes
def test_secrets_never_reach_logs_ledger_outputs_or_reports(
    db: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_url = _with_password(db)
    config = tmp_path / "sources.yaml"
    config.write_text(
        CONFIG_YAML + '    report:\n      recipients: ["qualite@region.example"]\n',
        encoding="utf-8",
    )
    env = {
        "KAIROS_DATABASE_URL": secret_url,
        "KAIROS_PSEUDONYM_KEY": PSEUDONYM_SECRET,
        "KAIROS_SMTP_HOST": "127.0.0.1",
        "KAIROS_SMTP_PORT": "1",  # nothing listens: the send fails
        "KAIROS_SMTP_USER": "kairos",
        "KAIROS_SMTP_PASSWORD": SMTP_SECRET,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    offers = generated(tmp_path, formations=8)
    outputs: list[str] = []

    # In process: every logger at DEBUG.
    load_snapshot(offers, source="occ", config=config, db_url=None)
    engine = get_engine(secret_url)
    try:
        insert_session(engine, SESSION_A, SIRET_A, SIRET_M)
    finally:
        engine.dispose()
    for kind, name in (
        ("training-plans", "training_plans_utf8bom_pipe.csv"),
        ("appointments", "appointments_utf8_semicolon.csv"),
    ):
        ingest_export(FIXTURES_DIR / name, kind=kind, db_url=None)  # type: ignore[arg-type]

    # Real processes: load, ingest, report + send (SMTP down).
    child_env = cli_env(**env)
    ingest = ["ingest-kairos", str(FIXTURES_DIR / "appointments_utf8_semicolon.csv")]
    report = ["report", "--as-of", "2026-11-23", "--out", str(tmp_path / "rapport")]
    for expected, args in (
        (0, ["load", str(offers), "--source", "occ", "--config", str(config)]),
        (0, [*ingest, "--kind", "appointments"]),
        (4, [*report, "--send", "--config", str(config)]),  # 4: not sent
    ):
        result = run_cli(*args, env=child_env)
        outputs += [result.stdout, result.stderr]
        assert result.returncode == expected, result.stderr
    assert "SMTP sending" in outputs[-1]  # the send failed, and said so without the secret

    haystacks = {
        "logs": caplog.text,
        "outputs": "\n".join(outputs),
        "ledger": repr(ledger(secret_url)),
        "database": _dump_database(secret_url),
        "report": "\n".join(
            p.read_text(encoding="utf-8", errors="replace")
            for p in (tmp_path / "rapport").iterdir()
            if p.suffix in (".html", ".json", ".csv")
        ),
    }
    for where, haystack in haystacks.items():
        for secret in SECRETS:
            assert secret not in haystack, f"{secret} leaked into the {where}"
    assert "kairos" in haystacks["logs"]  # the logs were captured at all


# ----------------------------------------------------------------------------- repository


SECRET_PATTERNS = (
    re.compile(r"[a-z0-9+]+://[^\s:/@'\"`]+:(?!password@|…@|\{)[^\s@/'\"`…]+@"),  # URL credentials
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"(?i)\b(password|passwd|secret|api_key|token)\s*[:=]\s*['\"][^'\"\s…]{6,}['\"]"),
    re.compile(r"AKIA[0-9A-Z]{16}"),
)
# Test values made to be grepped for, and the fixtures' invented key.
ALLOWED_SECRET_FILES = {
    "tests/reliability/test_security.py",
    "tests/kairos_export_fixtures.py",
    "tests/test_report.py",  # the loopback SMTP server's test login
    "tests/test_fetch_sftp.py",  # the loopback SFTP server's test logins
}


def test_no_secret_in_the_repository() -> None:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],  # noqa: S607
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        check=True,
    ).stdout.split()
    found = []
    for name in files:
        path = PROJECT_ROOT / name
        if name in ALLOWED_SECRET_FILES or not path.is_file() or path.suffix in (".png", ".gz"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        found += [f"{name}: {m.group(0)}" for p in SECRET_PATTERNS for m in p.finditer(text)]
    assert found == []


# ----------------------------------------------------------------------------- SQL


SQL_WORDS = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|FROM|WHERE|VALUES|ANALYZE|COPY|DROP|SET)\b")
# Every value interpolated into SQL text is an identifier list built from code constants
# (column tuples of transforms.kairos_mapping, table names of the loader, `?` marks).
# A new interpolation fails this test until it is reviewed and added here.
ALLOWED_INTERPOLATIONS = {
    "assignments",  # history.finish_run: `name = :name` for RUN_COUNT_COLUMNS
    "temp",  # pg_temp / temp
    "table",  # staging / target table names from load.py constants
    "marks",  # "?, ?, …"
    "trigger",  # history.snapshot_trigger_name: trg_<versioned table constant>_…
    "', '.join(columns)",
    "', '.join(self.columns[table])",
}
ALLOWED_FORMAT_KEYS = {
    "table", "staging", "columns", "staged_columns", "assignments", "scope", "match", "temp",
    "organisation_columns", "formation_columns", "action_columns", "session_columns",
    "slot_columns", "version_table", "fk", "snapshot", "batch",
    "kept",  # load.py _Entity.kept: the "skipped as unchanged" subquery, a code constant
    "trigger", "function",  # history.install_snapshot_triggers: names from table constants
}  # fmt: skip


def _sql_python_files() -> list[Path]:
    return sorted(
        p
        for folder in ("pipelines", "quality_checks", "dags")
        for p in (PROJECT_ROOT / folder).rglob("*.py")
    )


def test_sql_text_only_interpolates_reviewed_identifiers() -> None:
    problems: list[str] = []
    for path in _sql_python_files():
        where = path.relative_to(PROJECT_ROOT)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr):
                literal = "".join(str(v.value) for v in node.values if isinstance(v, ast.Constant))
                if not SQL_WORDS.search(literal):
                    continue
                for value in node.values:
                    if isinstance(value, ast.FormattedValue):
                        expression = ast.unparse(value.value)
                        if expression not in ALLOWED_INTERPOLATIONS:
                            problems.append(f"{where}:{node.lineno}: {{{expression}}} in SQL")
            elif (
                isinstance(node, ast.BinOp)
                and isinstance(node.op, ast.Mod)
                and isinstance(node.left, ast.Constant)
                and SQL_WORDS.search(str(node.left.value))
            ):
                problems.append(f"{where}:{node.lineno}: %-formatted SQL")
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "format"
            ):
                receiver = node.func.value
                is_sql_file = isinstance(receiver, ast.Call) and ast.unparse(
                    receiver.func
                ).endswith("read_sql")
                if isinstance(receiver, ast.Constant) and SQL_WORDS.search(str(receiver.value)):
                    problems.append(f"{where}:{node.lineno}: str.format on SQL text")
                if is_sql_file:
                    keys = {k.arg for k in node.keywords if k.arg}
                    problems += [
                        f"{where}:{node.lineno}: read_sql(...).format({key}=…)"
                        for key in sorted(keys - ALLOWED_FORMAT_KEYS)
                    ]
    assert problems == []


def test_sql_files_take_values_as_bound_parameters_only() -> None:
    """The `{…}` placeholders of sql/ files are identifiers filled by code (above); values
    are `:name` parameters. A quote-delimited placeholder would be a value pasted in."""
    pasted = []
    for path in sorted((PROJECT_ROOT / "sql").rglob("*.sql")):
        code = re.sub(r"--[^\n]*", "", path.read_text(encoding="utf-8"))  # comments out
        pasted += [
            f"{path.relative_to(PROJECT_ROOT)}: {m.group(0)}"
            for m in re.finditer(r"'[^'\n]*\{[a-z_]+\}[^'\n]*'", code)
        ]
    assert pasted == []


def test_hostile_names_and_texts_are_data_not_sql(db: str, tmp_path: Path) -> None:
    source = "o'; DROP TABLE run_ledger; --"
    config = tmp_path / "sources.yaml"
    config.write_text(f'sources:\n  "{source}":\n    lheo_version: "2.3"\n', encoding="utf-8")
    offers = generated(tmp_path, formations=4)
    text = offers.read_text(encoding="utf-8")
    first_title = text.split("<intitule-formation>")[1].split("</intitule-formation>")[0]
    hostile_title = "x'); DELETE FROM kairos_session; --"
    offers.write_text(text.replace(first_title, hostile_title, 1), encoding="utf-8")
    entry = load_snapshot(offers, source=source, config=config, db_url=db)
    assert entry.status == "succeeded"
    assert query(db, "SELECT source FROM run_ledger")[0][0] == source
    assert query(db, "SELECT COUNT(*) FROM formation WHERE intitule = :t", t=hostile_title)[0][0]
    assert query(db, "SELECT COUNT(*) FROM kairos_session")[0][0] == entry.sessions_inserted


# ----------------------------------------------------------------------------- paths


def test_snapshot_file_param_cannot_leave_the_source_folder(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    (landing / "occ" / "2026-11-23").mkdir(parents=True)
    (landing / "nor").mkdir()
    (landing / "nor" / "offres.xml").write_text("<lheo/>")
    (tmp_path / "outside.xml").write_text("<lheo/>")
    (landing / "occ" / "link.xml").symlink_to(tmp_path / "outside.xml")
    for value in (
        "../nor/offres.xml",
        str(landing / "nor" / "offres.xml"),
        str(tmp_path / "outside.xml"),
        "2026-11-23/../../../outside.xml",
        "link.xml",
        "/etc/passwd",
    ):
        with pytest.raises(PathOutsideAllowedFolderError, match="outside the allowed folder"):
            snapshot_from_param(value, source="occ", landing_zone=landing)


def test_trigger_params_cannot_name_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "sources.yaml"
    config.write_text(CONFIG_YAML, encoding="utf-8")
    monkeypatch.setenv("KAIROS_SOURCES_CONFIG", str(config))
    reports = tmp_path / "reports"
    monkeypatch.setenv("KAIROS_REPORTS_DIR", str(reports))
    day = datetime.date(2026, 11, 23)
    for sources in (["../../escape"], ["occ/../../escape"], [str(tmp_path / "escape")]):
        with pytest.raises(PlanError, match="unknown source"):
            plan_jobs({"sources": sources}, run_date=day, config_file=config)
        # Formerly the report step built <reports>/<as_of>/<source> from the names it
        # was given, so "../../x" wrote a report outside the reports folder.
        with pytest.raises(PlanError, match="unknown source"):
            report_step({"as_of": day.isoformat(), "sources": sources, "send_email": False})
    assert not (tmp_path / "escape").exists() and not reports.exists()


def test_unreachable_database_errors_are_one_line_without_the_password(tmp_path: Path) -> None:
    """A wrong role, a closed port, an unparseable URL: exit 1 or 2, one `error:` line, no
    traceback (formerly: a SQLAlchemy traceback), never the password."""
    offers = generated(tmp_path, formations=2)
    config = tmp_path / "sources.yaml"
    config.write_text(CONFIG_YAML, encoding="utf-8")
    bad_urls = (
        f"postgresql+psycopg2://nobody_here:{DB_SECRET}@127.0.0.1:5432/nowhere",
        f"postgresql+psycopg2://kairos:{DB_SECRET}@127.0.0.1:1/kairos",
        f"postgresql+psycopg2://kairos:{DB_SECRET}@127.0.0.1:notaport/kairos",
    )
    runs = [["load", str(offers), "--source", "occ", "--config", str(config), "--db", url]
            for url in bad_urls]  # fmt: skip
    adherents = str(FIXTURES_DIR / "adherents_utf8_pipe.csv")
    runs.append(["ingest-kairos", adherents, "--kind", "adherents", "--db", bad_urls[0]])
    for args in runs:
        result = run_cli(*args, env=cli_env(KAIROS_PSEUDONYM_KEY=PSEUDONYM_SECRET))
        output = result.stdout + result.stderr
        assert result.returncode in (1, 2), output
        assert result.stderr.startswith("error: ") and "Traceback" not in output, output
        for secret in SECRETS:
            assert secret not in output


@pytest.mark.postgres
def test_ledger_errors_mask_the_database_password(postgres_url: str) -> None:
    """Whatever text an error carries (a library echoing its connection string), the
    ledger never stores the password of the URL the run connected with."""
    from core.history import fail_run, start_run

    url = _with_password(postgres_url)
    engine = get_engine(url)
    try:
        migrate(engine)
        run_id = start_run(engine, run_kind="lheo", source="occ")
        fail_run(engine, run_id, f"OperationalError: could not connect with {url}")
    finally:
        engine.dispose()
    (error,) = query(postgres_url, "SELECT error FROM run_ledger")[0]
    assert DB_SECRET not in error and "***" in error
