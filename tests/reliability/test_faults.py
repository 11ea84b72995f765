"""Faults during a run: the database connection terminated mid-load, the loader
process killed, the landing zone full or read-only, the SMTP server down or refusing.

After each: the database holds the whole previous state (nothing of the failed run), the
ledger says what happened, and the next run succeeds without manual repair.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from lxml import etree
from rel_helpers import NS23, cli_env, edited, generated, ledger, open_keys, state
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from core.db import PROJECT_ROOT
from pipelines import fetch
from pipelines.cli import app
from pipelines.fetch import LandingZoneError, RetryPolicy, fetch_kairos_exports, fetch_snapshot
from pipelines.load import load_snapshot

runner = CliRunner()
HERE = Path(__file__).resolve().parent
MOUNT = shutil.which("mount") or "/bin/mount"
UMOUNT = shutil.which("umount") or "/bin/umount"


def _next_snapshot(good: Path, tmp_path: Path) -> Path:
    """The following night: one formation gone, one title changed (under the guard)."""

    def edit(root: etree._Element) -> None:
        offres = root.find(f"{{{NS23}}}offres")
        assert offres is not None
        formations = offres.findall(f"{{{NS23}}}formation")
        offres.remove(formations[-1])
        title = formations[0].find(f"{{{NS23}}}intitule-formation")
        assert title is not None
        title.text = "Intitulé modifié la nuit suivante"

    return edited(good, tmp_path / "next.xml", edit)


def _wait(predicate: Any, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# ----------------------------------------------------------------------------- database


@pytest.mark.postgres
def test_connection_terminated_mid_load_rolls_back(
    postgres_url: str, tmp_path: Path, config_file: Path
) -> None:
    """The server terminates the loader's backend (pg_terminate_backend) while it is inside
    its load transaction; a table lock taken by the test holds it there, deterministically."""
    from core.db import get_engine, migrate

    engine = get_engine(postgres_url)
    migrate(engine)
    engine.dispose()
    good = generated(tmp_path, formations=30)
    load_snapshot(good, source="occ", config=config_file, db_url=postgres_url)
    before = state(postgres_url)
    following = _next_snapshot(good, tmp_path)

    blocker = create_engine(postgres_url)
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            load_snapshot(following, source="occ", config=config_file, db_url=postgres_url)
        except BaseException as exc:
            outcome["error"] = exc

    with blocker.connect() as conn:
        conn.execute(text("LOCK TABLE kairos_session IN ACCESS EXCLUSIVE MODE"))
        thread = threading.Thread(target=run)
        thread.start()
        waiting = (
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        # Autocommit: pg_stat_activity is a per-transaction snapshot.
        with blocker.connect().execution_options(isolation_level="AUTOCOMMIT") as admin:
            _wait(
                lambda: admin.execute(text(waiting)).first() is not None or not thread.is_alive(),
                what="the loader to reach the locked table",
            )
            assert thread.is_alive(), f"the load ended before reaching the lock: {outcome}"
            running = admin.execute(
                text("SELECT status FROM run_ledger ORDER BY id DESC LIMIT 1")
            ).scalar()
            assert running == "running"
            pid = admin.execute(text(waiting)).scalar()
            assert admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
        conn.rollback()
    thread.join(60)
    blocker.dispose()

    assert "server closed the connection" in str(outcome["error"]), outcome
    assert state(postgres_url) == before, "the terminated load left part of its changes"
    last = ledger(postgres_url)[-1]
    assert last.status == "failed" and "OperationalError" in last.error
    assert "server closed the connection" in last.error
    # The next run needs no repair.
    entry = load_snapshot(following, source="occ", config=config_file, db_url=postgres_url)
    assert entry.status == "succeeded" and entry.sessions_closed > 0
    assert [r.status for r in ledger(postgres_url)] == ["succeeded", "failed", "succeeded"]


def test_loader_killed_mid_load_then_next_run_repairs_the_ledger(
    db: str, tmp_path: Path, config_file: Path
) -> None:
    """SIGKILL of a `kairos-sync load` process inside its transaction: the database rolls
    it back; the ledger row stays 'running' (a killed process writes nothing) until the
    next run of the source, holding the lock, marks it failed 'interrupted'."""
    good = generated(tmp_path, formations=30)
    load_snapshot(good, source="occ", config=config_file, db_url=db)
    before, keys_before = state(db), open_keys(db)
    following = _next_snapshot(good, tmp_path)
    marker = tmp_path / "paused"
    process = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "kill_driver.py"),
            *("load", str(following), "--source", "occ"),
            *("--config", str(config_file), "--db", db),
        ],
        env=cli_env(KAIROS_PAUSE_MARKER=str(marker)),
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        _wait(marker.exists, what="the loader to pause inside its transaction")
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert ledger(db)[-1].status == "running"
    assert state(db) == before and open_keys(db) == keys_before

    entry = load_snapshot(following, source="occ", config=config_file, db_url=db)
    assert entry.status == "succeeded"
    runs = ledger(db)
    assert [r.status for r in runs] == ["succeeded", "failed", "succeeded"]
    assert runs[1].error.startswith("interrupted:") and runs[1].finished_at is not None
    assert f"run {entry.run_id}" in runs[1].error
    assert open_keys(db) != keys_before  # the new snapshot is fully in


def test_ingestion_killed_mid_run_then_next_run_repairs_the_ledger(db: str, tmp_path: Path) -> None:
    """The same for `kairos-sync ingest-kairos`: its runs are serialised per kind and source
    (history.run_lock), and the next one marks a killed one 'interrupted'."""
    from kairos_export_fixtures import (
        FIXTURES_DIR,
        PSEUDONYM_KEY,
        SESSION_A,
        SIRET_A,
        SIRET_M,
        insert_session,
    )

    from core.db import get_engine
    from pipelines.kairos_exports import ingest_export

    engine = get_engine(db)
    try:
        insert_session(engine, SESSION_A, SIRET_A, SIRET_M)
    finally:
        engine.dispose()
    export = FIXTURES_DIR / "appointments_utf8_semicolon.csv"
    marker = tmp_path / "paused"
    process = subprocess.Popen(
        [
            *(sys.executable, str(HERE / "kill_driver.py"), "ingest-kairos", str(export)),
            *("--kind", "appointments", "--db", db),
        ],
        env=cli_env(KAIROS_PAUSE_MARKER=str(marker), KAIROS_PSEUDONYM_KEY=PSEUDONYM_KEY.decode()),
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(marker.exists, what="the ingestion to pause inside its transaction")
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    killed = [r for r in ledger(db) if r.run_kind == "appointments"]
    assert [r.status for r in killed] == ["running"]
    assert not [r for r in state(db)[1][1] if r.origin == "kairos"]  # no slot committed

    result = ingest_export(export, kind="appointments", db_url=db, pseudonym_key=PSEUDONYM_KEY)
    assert result.status == "succeeded"
    runs = [r for r in ledger(db) if r.run_kind == "appointments"]
    assert [r.status for r in runs] == ["failed", "succeeded"]
    assert runs[0].error.startswith("interrupted:")


# ----------------------------------------------------------------------------- landing zone


@pytest.fixture
def tiny_landing(tmp_path: Path) -> Iterator[Path]:
    """A 256 kB tmpfs (we run as root in CI); skipped where mounting is not allowed."""
    folder = tmp_path / "landing"
    folder.mkdir()
    mounted = subprocess.run(
        [MOUNT, "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()})")
    try:
        yield folder
    finally:
        subprocess.run([UMOUNT, "-l", str(folder)], check=False)


def _source_folder(tmp_path: Path, size: int) -> Path:
    folder = tmp_path / "source"
    (folder / "kairos").mkdir(parents=True)
    (folder / "offres.xml").write_bytes(b"<lheo/>" + b" " * size)
    (folder / "kairos" / "adherents.csv").write_bytes(b"SIRET|LIBELLE\n" + b" " * size)
    return folder


def _no_partial_files(landing: Path) -> None:
    leftovers = [p for p in landing.rglob("*") if p.is_file()]
    assert leftovers == [], leftovers


def test_landing_zone_full_fails_clearly_and_leaves_nothing(
    tiny_landing: Path, tmp_path: Path
) -> None:
    source = _source_folder(tmp_path, 1_000_000)
    today = date(2026, 11, 23)
    started = time.monotonic()
    with pytest.raises(LandingZoneError, match=r"No space left on device \(errno 28\)"):
        fetch_snapshot(
            "occ", location=str(source), logical_date=today, landing_zone=tiny_landing, today=today
        )
    assert time.monotonic() - started < 5, "a full disk is not retried"
    _no_partial_files(tiny_landing)
    with pytest.raises(LandingZoneError, match="No space left"):
        fetch_kairos_exports(
            "occ",
            exports_location=str(source / "kairos"),
            logical_date=today,
            landing_zone=tiny_landing,
            today=today,
        )
    _no_partial_files(tiny_landing)
    # Space freed (a smaller file): the next fetch succeeds without repair.
    (source / "offres.xml").write_bytes(b"<lheo/>")
    fetched = fetch_snapshot(
        "occ", location=str(source), logical_date=today, landing_zone=tiny_landing, today=today
    )
    assert fetched.path.read_bytes() == b"<lheo/>" and not fetched.reused


def test_landing_zone_read_only_fails_clearly(tiny_landing: Path, tmp_path: Path) -> None:
    source = _source_folder(tmp_path, 10)
    subprocess.run([MOUNT, "-o", "remount,ro", str(tiny_landing)], check=True)
    today = date(2026, 11, 23)
    with pytest.raises(LandingZoneError, match="Read-only file system"):
        fetch_snapshot(
            "occ", location=str(source), logical_date=today, landing_zone=tiny_landing, today=today
        )


def test_landing_zone_write_errors_are_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without mount rights: ENOSPC / EACCES simulated on the write itself (monkeypatch)."""
    source = _source_folder(tmp_path, 10)
    today = date(2026, 11, 23)
    sleeps: list[float] = []
    for code in (errno.ENOSPC, errno.EACCES):

        def failing(*_args: Any, code: int = code) -> None:
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(fetch.os, "fsync", failing)
        with pytest.raises(LandingZoneError, match=os.strerror(code)):
            fetch_snapshot(
                "occ",
                location=str(source),
                logical_date=today,
                landing_zone=tmp_path / "landing",
                today=today,
                retry=RetryPolicy(attempts=3, base_seconds=0.01),
                sleep=sleeps.append,
            )
        _no_partial_files(tmp_path / "landing")
    assert sleeps == []


# ----------------------------------------------------------------------------- SMTP


class _Handler:
    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.received = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.reply.startswith("250"):
            self.received += 1
        return self.reply


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_smtp_down_or_refusing_keeps_the_report_until_sent(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from quality_data import AS_OF, QualityData

    QualityData(sqlite_url).dispose()
    config = tmp_path / "sources.yaml"
    config.write_text(
        'sources:\n  occ:\n    report:\n      recipients: ["qualite@region.example"]\n',
        encoding="utf-8",
    )
    out = tmp_path / "rapport"
    port = _free_port()
    monkeypatch.setenv("KAIROS_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("KAIROS_SMTP_PORT", str(port))
    args = ["report", "--out", str(out), "--db", sqlite_url, "--config", str(config)]

    # 1. Nobody listens: the report is written, the send fails with exit 4 (not sent).
    result = runner.invoke(app, [*args, "--as-of", AS_OF.isoformat(), "--send"])
    assert result.exit_code == 4, result.output
    assert "SMTP sending" in result.output and "retry with --send" in result.output
    assert (out / "report.json").is_file() and not (out / "sent.json").exists()
    written = sorted(p.name for p in out.iterdir())

    # 2. The server answers but refuses the message (554): still kept, still unsent.
    for reply, sent in (("554 5.7.1 refused by policy", False), ("250 OK", True)):
        handler = _Handler(reply)
        controller = Controller(handler, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            result = runner.invoke(app, [*args, "--send"])  # resend the same report
        finally:
            controller.stop()
        assert (result.exit_code == 0) is sent, result.output
        assert (out / "sent.json").is_file() is sent
        assert handler.received == int(sent)
    assert sorted(p.name for p in out.iterdir()) == sorted([*written, "sent.json"])
