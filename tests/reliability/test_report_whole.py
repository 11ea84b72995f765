"""The Region's report is whole or not at all, and it is e-mailed at most once.

A reviewer found, on a full disk, `report --out DIR` over an older report leaving new HTML
and PNG, a CSV cut mid-row and the old `report.json`; `report --send` then mailed a subject
of one date, a body of another and the broken CSV, crashed writing `sent.json` yet exited
0, and the retry sent again. Here the disk is really full (a small tmpfs, mounted as root
like tests/reliability/test_faults.py; skipped where mounting is not allowed), the commands
are real processes and the SMTP server is aiosmtpd on loopback, counting what it receives.
"""

from __future__ import annotations

import email
import email.policy
import errno
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from quality_data import AS_OF, QualityData, days
from rel_helpers import cli_env, run_cli

MOUNT = shutil.which("mount") or "/bin/mount"
UMOUNT = shutil.which("umount") or "/bin/umount"
RECIPIENT = "qualite@region.example"
CONFIG_YAML = f'sources:\n  test:\n    report:\n      recipients: ["{RECIPIENT}"]\n'
RUN_FAILED, NOT_SENT, SENT_NOT_RECORDED = 3, 4, 5


class Smtp:
    """aiosmtpd on loopback keeping every message; `on_data` runs before it answers 250."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[email.message.EmailMessage] = []
        self.on_data: Callable[[], None] | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.on_data is not None:
            self.on_data()
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, email.message.EmailMessage)
        self.messages.append(message)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    handler = Smtp(port)
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler
    finally:
        controller.stop()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MB file system that can be filled."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(
        [MOUNT, "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()})")
    try:
        yield folder
    finally:
        subprocess.run([UMOUNT, "-l", str(folder)], check=False)


@pytest.fixture
def data(db_url: str) -> Iterator[QualityData]:
    db = QualityData(db_url)
    db.session(carif_session_numero="S-BLOCKED")
    yield db
    db.dispose()


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the file system of `folder` until `leave` bytes (about) are free."""
    filler = folder / "filler"
    with filler.open("ab") as handle:
        try:
            while True:
                stat = os.statvfs(folder)
                free = stat.f_bavail * stat.f_frsize
                if free <= leave:
                    break
                handle.write(b"\0" * min(65536, free - leave))
                handle.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


class Cli:
    def __init__(self, data: QualityData, out: Path, config: Path, smtp: Smtp | None) -> None:
        self.out = out
        self.base = ["--out", str(out), "--db", data.url, "--config", str(config)]
        extra = (
            {"KAIROS_SMTP_HOST": "127.0.0.1", "KAIROS_SMTP_PORT": str(smtp.port)} if smtp else {}
        )
        self.env = cli_env(**extra)

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = run_cli("report", *self.base, *args, env=self.env)
        assert "Traceback" not in result.stdout + result.stderr, result.stderr
        return result  # type: ignore[no-any-return]


def _cli(data: QualityData, tmp_path: Path, out: Path, smtp: Smtp | None = None) -> Cli:
    config = tmp_path / "sources.yaml"
    config.write_text(CONFIG_YAML, encoding="utf-8")
    return Cli(data, out, config, smtp)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_full_disk_keeps_the_previous_report_whole_and_sends_it_once(
    data: QualityData, tmp_path: Path, disk: Path, smtp: Smtp
) -> None:
    out = disk / "rapport"
    report = _cli(data, tmp_path, out, smtp)
    first = report("--as-of", days(-7).isoformat())
    assert first.returncode == 0, first.stderr
    before = _files(out)
    manifest = json.loads(before["report.json"])

    # A week later: a thousand more blocked sessions, so a much larger report, and a disk
    # with room for a few of its files only.
    data.sessions(1000)
    filler = fill(disk, leave=300_000)
    full = report("--as-of", AS_OF.isoformat())
    assert full.returncode == RUN_FAILED, full.stderr
    assert "No space left on device" in _error(full)
    assert _files(out) == before  # the previous report, byte for byte
    assert sorted(p.name for p in disk.iterdir()) == ["filler", "rapport"]  # no temp folder

    # Sending what is on disk sends the previous report, consistent, exactly once.
    filler.unlink()
    sent = report("--send")
    assert sent.returncode == 0, sent.stderr
    (message,) = smtp.messages
    assert message["Subject"] == manifest["subject"]
    (csv_part,) = [p for p in message.iter_attachments() if p.get_filename() == manifest["csv"]]
    assert csv_part.get_payload(decode=True) == before[manifest["csv"]]
    html = message.get_body(preferencelist=("html",))
    assert html is not None  # the same body, line endings aside (MIME uses CRLF)
    assert html.get_content().splitlines() == before["email.html"].decode("utf-8").splitlines()
    record = json.loads((out / "sent.json").read_bytes())
    assert record["check_run_id"] == manifest["check_run_id"]
    again = report("--send")
    assert again.returncode == 0, again.stderr
    assert "already sent" in again.stdout
    assert len(smtp.messages) == 1

    # With room again, the new report replaces the old one whole; it is a new report, so it
    # is sent (once), and the record of the earlier sending is kept until then.
    rewritten = report("--as-of", AS_OF.isoformat())
    assert rewritten.returncode == 0, rewritten.stderr
    assert sorted(p.name for p in disk.iterdir()) == ["rapport"]
    assert json.loads((out / "report.json").read_bytes())["as_of"] == AS_OF.isoformat()
    assert json.loads((out / "sent.json").read_bytes()) == record
    assert report("--send").returncode == 0
    assert report("--send").returncode == 0
    assert len(smtp.messages) == 2
    assert smtp.messages[1]["Subject"].startswith("[KAIROS] Contrôle qualité au 16/03/2026")


def _break_csv(out: Path, other: Path) -> str:
    csv = out / "signalements.csv"
    content = csv.read_bytes()
    csv.write_bytes(content[: len(content) // 2])  # cut mid-row, as a full disk leaves it
    return "signalements.csv"


def _other_runs_body(out: Path, other: Path) -> str:
    shutil.copyfile(other / "email.html", out / "email.html")  # another run's, intact
    return "email.html"


def _missing_chart(out: Path, other: Path) -> str:
    (out / "tendance.png").unlink()
    return "tendance.png"


def _old_manifest(out: Path, other: Path) -> str:
    manifest = json.loads((out / "report.json").read_bytes())
    manifest.pop("files", None)  # what the previous version wrote: nothing to verify against
    (out / "report.json").write_text(json.dumps(manifest), encoding="utf-8")
    return "report.json"


@pytest.mark.parametrize("damage", [_break_csv, _other_runs_body, _missing_chart, _old_manifest])
def test_send_refuses_files_that_are_not_those_of_the_manifest(
    data: QualityData,
    tmp_path: Path,
    smtp: Smtp,
    damage: Callable[[Path, Path], str],
) -> None:
    """Every file must exist with the size and SHA-256 the manifest lists for its run;
    otherwise nothing is sent (exit 4) and the message names the file."""
    other = tmp_path / "other"
    assert _cli(data, tmp_path, other)("--as-of", days(-7).isoformat()).returncode == 0
    out = tmp_path / "rapport"
    report = _cli(data, tmp_path, out, smtp)
    assert report("--as-of", AS_OF.isoformat()).returncode == 0
    name = damage(out, other)
    refused = report("--send")
    assert refused.returncode == NOT_SENT, refused.stderr
    assert name in _error(refused)
    assert smtp.messages == [] and not (out / "sent.json").exists()


def test_a_sending_that_cannot_be_recorded_fails_and_is_never_repeated(
    data: QualityData, tmp_path: Path, disk: Path, smtp: Smtp
) -> None:
    """The disk fills while the SMTP server accepts the message: the report WAS sent, but
    sent.json cannot be written. The command says so (exit 5); retries refuse to send it
    again (exit 4) until an operator asks for it with --resend."""
    out = disk / "rapport"
    report = _cli(data, tmp_path, out, smtp)
    assert report("--as-of", AS_OF.isoformat()).returncode == 0

    def full_as_the_message_arrives() -> None:
        fill(disk)

    smtp.on_data = full_as_the_message_arrives
    unrecorded = report("--send")
    assert unrecorded.returncode == SENT_NOT_RECORDED, unrecorded.stderr
    line = _error(unrecorded)
    assert "WAS sent" in line and "No space left on device" in line, line
    assert len(smtp.messages) == 1 and not (out / "sent.json").exists()
    smtp.on_data = None

    retry = report("--send")
    assert retry.returncode == NOT_SENT, retry.stderr
    assert "--resend" in _error(retry)
    (disk / "filler").unlink()
    assert report("--send").returncode == NOT_SENT  # room again: still not sent twice
    assert len(smtp.messages) == 1

    resent = report("--resend")
    assert resent.returncode == 0, resent.stderr
    assert len(smtp.messages) == 2 and (out / "sent.json").is_file()
    done = report("--send")
    assert done.returncode == 0 and "already sent" in done.stdout
    assert len(smtp.messages) == 2
