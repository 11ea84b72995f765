"""pipelines.fetch without Airflow: folders, loopback HTTP, retries, backfill reuse, escapes."""

from __future__ import annotations

import datetime
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.fetch import (
    ChecksumMismatchError,
    FetchError,
    PathOutsideAllowedFolderError,
    RetryPolicy,
    SnapshotNotArchivedError,
    default_exports_location,
    export_kind,
    fetch_kairos_exports,
    fetch_snapshot,
    snapshot_from_param,
)

TODAY = datetime.date(2026, 11, 3)
YESTERDAY = TODAY - datetime.timedelta(days=1)
FAST = RetryPolicy(attempts=3, base_seconds=0.01, cap_seconds=0.02)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def source_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "offres.xml").write_bytes(b"<lheo>today</lheo>")
    return folder


def test_local_folder_is_archived_with_sidecar(source_dir: Path, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    got = fetch_snapshot(
        "smf-normandie",
        location=str(source_dir),
        logical_date=TODAY,
        landing_zone=landing,
        today=TODAY,
    )
    expected = landing / "smf-normandie" / "2026-11-03" / "offres.xml"
    assert got.path == expected.resolve() or got.path == expected
    assert got.path.read_bytes() == b"<lheo>today</lheo>"
    assert got.sha256 == _sha(b"<lheo>today</lheo>")
    assert not got.reused
    sidecar = expected.with_name("offres.xml.sha256").read_text()
    assert sidecar == f"{got.sha256}  offres.xml\n"
    # No staging leftovers next to the archive.
    assert sorted(p.name for p in expected.parent.iterdir()) == ["offres.xml", "offres.xml.sha256"]


def test_same_date_twice_reuses_the_archive(source_dir: Path, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    first = fetch_snapshot(
        "s", location=str(source_dir), logical_date=TODAY, landing_zone=landing, today=TODAY
    )
    (source_dir / "offres.xml").write_bytes(b"<lheo>changed later today</lheo>")
    second = fetch_snapshot(
        "s", location=str(source_dir), logical_date=TODAY, landing_zone=landing, today=TODAY
    )
    assert second.reused
    assert second.path == first.path
    assert second.sha256 == first.sha256
    assert second.path.read_bytes() == b"<lheo>today</lheo>"


def test_past_date_reuses_its_own_archive_never_todays_file(
    source_dir: Path, tmp_path: Path
) -> None:
    landing = tmp_path / "landing"
    day = landing / "s" / YESTERDAY.isoformat()
    day.mkdir(parents=True)
    (day / "offres.xml").write_bytes(b"<lheo>yesterday</lheo>")
    (day / "offres.xml.sha256").write_text(f"{_sha(b'<lheo>yesterday</lheo>')}  offres.xml\n")
    got = fetch_snapshot(
        "s", location=str(source_dir), logical_date=YESTERDAY, landing_zone=landing, today=TODAY
    )
    assert got.reused
    assert got.path.read_bytes() == b"<lheo>yesterday</lheo>"


def test_past_date_without_archive_is_a_clear_error(source_dir: Path, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    with pytest.raises(SnapshotNotArchivedError, match=r"no archived snapshot for 2026-11-02"):
        fetch_snapshot(
            "s",
            location=str(source_dir),
            logical_date=YESTERDAY,
            landing_zone=landing,
            today=TODAY,
        )
    # …and today's file was not copied in yesterday's place.
    assert not (landing / "s" / YESTERDAY.isoformat() / "offres.xml").exists()


def test_tampered_archive_is_refused(source_dir: Path, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    got = fetch_snapshot(
        "s", location=str(source_dir), logical_date=TODAY, landing_zone=landing, today=TODAY
    )
    got.path.write_bytes(b"<lheo>edited by hand</lheo>")
    with pytest.raises(ChecksumMismatchError):
        fetch_snapshot(
            "s", location=str(source_dir), logical_date=TODAY, landing_zone=landing, today=TODAY
        )


def test_dry_run_writes_nothing_in_the_landing_zone(source_dir: Path, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    got = fetch_snapshot(
        "s",
        location=str(source_dir),
        logical_date=TODAY,
        landing_zone=landing,
        today=TODAY,
        dry_run=True,
    )
    assert got.path.read_bytes() == b"<lheo>today</lheo>"
    assert not got.path.is_relative_to(landing)
    assert not (landing / "s" / TODAY.isoformat() / "offres.xml").exists()


def test_newest_matching_file_of_the_folder_is_taken(tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    old = folder / "offres-1.xml"
    old.write_bytes(b"old")
    new = folder / "offres-2.xml.gz"
    new.write_bytes(b"new")
    (folder / "readme.txt").write_bytes(b"ignored")
    import os

    os.utime(old, (1_000_000, 1_000_000))
    got = fetch_snapshot(
        "s", location=str(folder), logical_date=TODAY, landing_zone=tmp_path / "l", today=TODAY
    )
    assert got.path.name == "offres-2.xml.gz"


def test_missing_folder_and_bad_source_names(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="does not exist"):
        fetch_snapshot(
            "s",
            location=str(tmp_path / "nope"),
            logical_date=TODAY,
            landing_zone=tmp_path,
            today=TODAY,
        )
    for bad in ("../etc", "a/b", "..", ".hidden", ""):
        with pytest.raises(FetchError, match="invalid source name"):
            fetch_snapshot(
                bad, location=str(tmp_path), logical_date=TODAY, landing_zone=tmp_path, today=TODAY
            )


# --------------------------------------------------------------------------- HTTP


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b"<lheo>over http</lheo>"
    failures_left = 0
    calls = 0

    def do_GET(self) -> None:
        type(self).calls += 1
        if type(self).failures_left > 0:
            type(self).failures_left -= 1
            self.send_error(503, "busy")
            return
        if self.path != "/export/offres.xml":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output quiet
        pass


@pytest.fixture
def http_base() -> Iterator[str]:
    _Handler.failures_left = 0
    _Handler.calls = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_source(http_base: str, tmp_path: Path) -> None:
    got = fetch_snapshot(
        "sigma-occitanie",
        location=f"{http_base}/export/offres.xml",
        logical_date=TODAY,
        landing_zone=tmp_path,
        today=TODAY,
        retry=FAST,
    )
    assert got.path == tmp_path / "sigma-occitanie" / "2026-11-03" / "offres.xml"
    assert got.path.read_bytes() == _Handler.body
    assert got.sha256 == _sha(_Handler.body)


def test_http_retries_then_succeeds(http_base: str, tmp_path: Path) -> None:
    _Handler.failures_left = 2
    waits: list[float] = []
    got = fetch_snapshot(
        "s",
        location=f"{http_base}/export/offres.xml",
        logical_date=TODAY,
        landing_zone=tmp_path,
        today=TODAY,
        retry=RetryPolicy(attempts=3, base_seconds=0.01, cap_seconds=1.0),
        sleep=waits.append,
    )
    assert got.path.read_bytes() == _Handler.body
    assert _Handler.calls == 3
    assert waits == [0.01, 0.02]  # exponential


def test_http_retries_are_bounded(http_base: str, tmp_path: Path) -> None:
    _Handler.failures_left = 100
    with pytest.raises(FetchError, match="giving up after 3 attempts: HTTP 503"):
        fetch_snapshot(
            "s",
            location=f"{http_base}/export/offres.xml",
            logical_date=TODAY,
            landing_zone=tmp_path,
            today=TODAY,
            retry=FAST,
        )
    assert _Handler.calls == 3
    assert not (tmp_path / "s" / "2026-11-03" / "offres.xml").exists()


def test_http_404_is_not_retried(http_base: str, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_snapshot(
            "s",
            location=f"{http_base}/missing.xml",
            logical_date=TODAY,
            landing_zone=tmp_path,
            today=TODAY,
            retry=FAST,
        )
    assert _Handler.calls == 1


def test_connection_refused_is_retried_and_bounded(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    waits: list[float] = []
    with pytest.raises(FetchError, match="giving up after 3 attempts"):
        fetch_snapshot(
            "s",
            location=f"http://127.0.0.1:{port}/offres.xml",
            logical_date=TODAY,
            landing_zone=tmp_path,
            today=TODAY,
            retry=FAST,
            sleep=waits.append,
            timeout=2,
        )
    assert len(waits) == 2


# --------------------------------------------------------------------------- params


def _archive(landing: Path, source: str, day: datetime.date, data: bytes) -> Path:
    folder = landing / source / day.isoformat()
    folder.mkdir(parents=True)
    (folder / "offres.xml").write_bytes(data)
    (folder / "offres.xml.sha256").write_text(f"{_sha(data)}  offres.xml\n")
    return folder / "offres.xml"


def test_snapshot_param_inside_the_landing_zone(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    path = _archive(landing, "s", YESTERDAY, b"x")
    got = snapshot_from_param(str(path), source="s", landing_zone=landing)
    assert got.path == path.resolve()
    relative = snapshot_from_param("2026-11-02/offres.xml", source="s", landing_zone=landing)
    assert relative.path == path.resolve()


@pytest.mark.parametrize(
    "value",
    ["/etc/passwd", "../other/2026-11-02/offres.xml", "2026-11-02/../../../secret.xml"],
)
def test_snapshot_param_escaping_is_refused(tmp_path: Path, value: str) -> None:
    landing = tmp_path / "landing"
    _archive(landing, "s", YESTERDAY, b"x")
    _archive(landing, "other", YESTERDAY, b"y")
    (tmp_path / "secret.xml").write_bytes(b"secret")
    with pytest.raises(PathOutsideAllowedFolderError, match="outside the allowed folder"):
        snapshot_from_param(value, source="s", landing_zone=landing)


def test_snapshot_param_symlink_out_is_refused(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    (landing / "s").mkdir(parents=True)
    (tmp_path / "secret.xml").write_bytes(b"secret")
    (landing / "s" / "link.xml").symlink_to(tmp_path / "secret.xml")
    with pytest.raises(PathOutsideAllowedFolderError):
        snapshot_from_param("link.xml", source="s", landing_zone=landing)


# --------------------------------------------------------------------------- exports


def test_kairos_exports_found_archived_and_reused(source_dir: Path, tmp_path: Path) -> None:
    exports = source_dir / "kairos"
    exports.mkdir()
    (exports / "adherents.csv").write_text("a|b\n")
    (exports / "training-plans_20261103.csv").write_text("c|d\n")
    (exports / "RDV-2026.csv").write_text("e|f\n")
    (exports / "notes.csv").write_text("ignored\n")
    location = default_exports_location(str(source_dir))
    assert location == str(exports)
    landing = tmp_path / "landing"
    got = fetch_kairos_exports(
        "s", exports_location=location, logical_date=TODAY, landing_zone=landing, today=TODAY
    )
    assert sorted((e.path.name, e.kind) for e in got) == [
        ("RDV-2026.csv", "appointments"),
        ("adherents.csv", "adherents"),
        ("training-plans_20261103.csv", "training-plans"),
    ]
    assert all(e.path.parent == landing / "s" / "2026-11-03" / "kairos" for e in got)
    (exports / "adherents.csv").write_text("changed\n")
    again = fetch_kairos_exports(
        "s", exports_location=location, logical_date=TODAY, landing_zone=landing, today=TODAY
    )
    assert all(e.reused for e in again)
    assert {e.sha256 for e in again} == {e.sha256 for e in got}
    # A past date without archived exports gets none (never today's files).
    assert (
        fetch_kairos_exports(
            "s",
            exports_location=location,
            logical_date=YESTERDAY,
            landing_zone=landing,
            today=TODAY,
        )
        == []
    )


def test_export_kinds() -> None:
    assert export_kind("adherents_2026.csv") == "adherents"
    assert export_kind("Plans-Formation.csv") == "training-plans"
    assert export_kind("appointments.csv") == "appointments"
    assert export_kind("offres.csv") is None
    assert default_exports_location("https://example.org/offres.xml") is None
