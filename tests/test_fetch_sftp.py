"""pipelines.fetch over SFTP, against a real asyncssh server on loopback.

The server runs in a background thread with its own event loop, a generated ed25519 host
key, password (and public key) auth, and serves a tmp folder. It records the connections,
the logins tried and every read (session, offset, size), and can cut the first session
that reads once it asks for an offset past a limit, as a network drop would.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import errno
import hashlib
import json
import os
import random
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import asyncssh
import pytest

from pipelines import sftp_source
from pipelines.fetch import (
    FetchedSnapshot,
    FetchError,
    LandingZoneError,
    RetryPolicy,
    fetch_snapshot,
)
from pipelines.sftp_source import SftpCredentials, fingerprint

TODAY = datetime.date(2026, 11, 3)
FAST = RetryPolicy(attempts=3, base_seconds=0.01, cap_seconds=0.02)
USER, PASSWORD = "carif", "s3cret-pass-word"
SOURCE = "smf-normandie"
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _public_line(key: asyncssh.SSHKey) -> str:
    """'keytype base64', the part of a known_hosts line that the credentials pin."""
    return " ".join(key.export_public_key("openssh").decode().split()[:2])


@dataclass
class _Record:
    connections: int = 0
    open_connections: list[asyncssh.SSHServerConnection] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)  # (user, method)
    sessions: int = 0
    reads: list[tuple[int, int, int]] = field(default_factory=list)  # (session, offset, size)
    cut_after: int | None = None  # cut the first reading session at this offset
    cut_session: int | None = None
    cut_done: bool = False

    def reads_of(self, session: int) -> list[tuple[int, int]]:
        return [(offset, size) for s, offset, size in self.reads if s == session]

    def reading_sessions(self) -> list[int]:
        return sorted({s for s, _, _ in self.reads})


class _Server:
    def __init__(self, root: Path, host_key_type: str = "ssh-ed25519") -> None:
        self.root = root
        self.record = _Record()
        self.host_key = asyncssh.generate_private_key(host_key_type)
        self.client_key = asyncssh.generate_private_key("ssh-ed25519")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.acceptor = asyncio.run_coroutine_threadsafe(self._listen(), self.loop).result(10)
        self.port: int = self.acceptor.get_port()

    @property
    def pinned(self) -> str:
        return _public_line(self.host_key)

    def location(self, path: str) -> str:
        return f"sftp://127.0.0.1:{self.port}{path}"

    async def _listen(self) -> asyncssh.SSHAcceptor:
        record, root, client_key = self.record, self.root, self.client_key

        class Auth(asyncssh.SSHServer):
            def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
                record.connections += 1
                record.open_connections.append(conn)

            def begin_auth(self, username: str) -> bool:
                return True

            def password_auth_supported(self) -> bool:
                return True

            def validate_password(self, username: str, password: str) -> bool:
                record.logins.append((username, "password"))
                return username == USER and password == PASSWORD

            def public_key_auth_supported(self) -> bool:
                return True

            def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
                record.logins.append((username, "publickey"))
                return username == USER and key.public_data == client_key.public_data

        class Sftp(asyncssh.SFTPServer):
            def __init__(self, chan: asyncssh.SSHServerChannel) -> None:
                super().__init__(chan, chroot=os.fsencode(root))
                record.sessions += 1
                self.session = record.sessions

            async def read(self, file_obj: object, offset: int, size: int) -> bytes:  # type: ignore[override]
                record.reads.append((self.session, offset, size))
                if record.cut_after is not None and record.cut_session is None:
                    record.cut_session = self.session  # the first session that reads
                if self.session == record.cut_session and offset >= (record.cut_after or 0):
                    conn = self.channel.get_connection()
                    if not record.cut_done:
                        record.cut_done = True
                        # Let the answers already sent reach the client, then drop the TCP
                        # connection without a goodbye, as a network cut would.
                        asyncio.get_running_loop().call_later(0.3, conn.abort)
                    await conn.wait_closed()  # never answered: the connection is gone
                    raise asyncssh.SFTPFailure("cut")
                data = super().read(file_obj, offset, size)
                assert isinstance(data, bytes)
                return data

        return await asyncssh.listen(
            "127.0.0.1",
            0,
            server_host_keys=[self.host_key],
            server_factory=Auth,
            sftp_factory=Sftp,
            allow_scp=False,
        )

    def close(self) -> None:
        async def stop() -> None:
            self.acceptor.close()
            await self.acceptor.wait_closed()
            for conn in self.record.open_connections:
                conn.close()
                await conn.wait_closed()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[_Server]:
    root = tmp_path / "sftp-root"
    (root / "export" / "lheo").mkdir(parents=True)
    srv = _Server(root)
    try:
        yield srv
    finally:
        srv.close()


def _credentials(server: _Server, **changes: Any) -> SftpCredentials:
    base = SftpCredentials(username=USER, password=PASSWORD, host_key=server.pinned, timeout=10)
    return dataclasses.replace(base, **changes)


def _fetch(
    server: _Server,
    landing: Path,
    path: str,
    *,
    sleep: Callable[[float], None] = lambda _: None,
    sftp: SftpCredentials | Literal["default"] | None = "default",
) -> FetchedSnapshot:
    """fetch_snapshot of `path` on the test server, with no real waits between attempts."""
    return fetch_snapshot(
        SOURCE,
        location=server.location(path),
        logical_date=TODAY,
        landing_zone=landing,
        today=TODAY,
        retry=FAST,
        timeout=10,
        sleep=sleep,
        sftp=_credentials(server) if sftp == "default" else sftp,
    )


def _nothing_in(landing: Path) -> bool:
    return not landing.exists() or not any(landing.rglob("*"))


# --------------------------------------------------------------------------- downloads


def test_file_is_archived_with_sidecar_like_a_local_fetch(server: _Server, tmp_path: Path) -> None:
    data = b"<lheo>over sftp</lheo>"
    (server.root / "export" / "lheo" / "offres.xml").write_bytes(data)
    landing = tmp_path / "landing"
    waits: list[float] = []
    got = _fetch(server, landing, "/export/lheo/offres.xml", sleep=waits.append)

    expected = landing / SOURCE / "2026-11-03" / "offres.xml"
    assert got.path == expected
    assert got.path.read_bytes() == data
    assert got.sha256 == _sha(data)
    assert not got.reused
    assert expected.with_name("offres.xml.sha256").read_text() == f"{_sha(data)}  offres.xml\n"
    # No staging folder, partial file or resume state left next to the archive.
    assert sorted(p.name for p in expected.parent.iterdir()) == ["offres.xml", "offres.xml.sha256"]
    assert waits == []
    assert server.record.logins == [(USER, "password")] * 2  # pick, then download

    again = _fetch(server, landing, "/export/lheo/offres.xml")
    assert again.reused and again.sha256 == got.sha256
    assert server.record.connections == 2  # an archived date does not connect


def test_folder_location_picks_the_newest_matching_file(server: _Server, tmp_path: Path) -> None:
    folder = server.root / "export" / "lheo"
    files = {
        "offres-1.xml": (b"old", 1_000_000),
        "offres-2.xml.gz": (b"newest matching", 2_000_000),
        "offres-3.xml.part": (b"still uploading", 3_000_000),
        "offres-2.xml.gz.sha256": (b"not a snapshot", 3_000_000),
        "readme.txt": (b"not matching", 4_000_000),
    }
    for name, (data, mtime) in files.items():
        (folder / name).write_bytes(data)
        os.utime(folder / name, (mtime, mtime))
    (folder / "sub.xml").mkdir()  # a folder is never a snapshot
    os.utime(folder / "sub.xml", (5_000_000, 5_000_000))

    got = _fetch(server, tmp_path / "landing", "/export/lheo/")
    assert got.path.name == "offres-2.xml.gz"
    assert got.path.read_bytes() == b"newest matching"
    assert got.sha256 == _sha(b"newest matching")


def test_private_key_file_and_text_log_in(server: _Server, tmp_path: Path) -> None:
    (server.root / "export" / "lheo" / "offres.xml").write_bytes(b"<lheo/>")
    key_text = server.client_key.export_private_key("openssh").decode()
    key_file = tmp_path / "id_ed25519"
    key_file.write_text(key_text)
    by_file = _credentials(server, password=None, key_file=str(key_file))
    got = _fetch(server, tmp_path / "l1", "/export/lheo/offres.xml", sftp=by_file)
    by_text = _credentials(server, password=None, private_key=key_text)
    again = _fetch(server, tmp_path / "l2", "/export/lheo/offres.xml", sftp=by_text)
    assert got.sha256 == again.sha256 == _sha(b"<lheo/>")
    assert {method for _, method in server.record.logins} == {"publickey"}


@pytest.mark.parametrize("key_type", ["ssh-rsa", "ecdsa-sha2-nistp256"])
def test_rsa_and_ecdsa_host_keys_can_be_pinned(tmp_path: Path, key_type: str) -> None:
    root = tmp_path / "sftp-root"
    (root / "export").mkdir(parents=True)
    (root / "export" / "offres.xml").write_bytes(b"<lheo/>")
    server = _Server(root, key_type)
    try:
        got = _fetch(server, tmp_path / "landing", "/export/offres.xml")
        assert got.sha256 == _sha(b"<lheo/>")
        other = asyncssh.generate_private_key(key_type)
        with pytest.raises(FetchError, match="not the pinned one"):
            _fetch(
                server,
                tmp_path / "other",
                "/export/offres.xml",
                sftp=_credentials(server, host_key=_public_line(other)),
            )
    finally:
        server.close()


# --------------------------------------------------------------------------- refusals


def test_wrong_host_key_is_refused_before_login(server: _Server, tmp_path: Path) -> None:
    (server.root / "export" / "lheo" / "offres.xml").write_bytes(b"<lheo/>")
    other = asyncssh.generate_private_key("ssh-ed25519")
    landing = tmp_path / "landing"
    waits: list[float] = []
    with pytest.raises(FetchError) as caught:
        _fetch(
            server,
            landing,
            "/export/lheo/offres.xml",
            sleep=waits.append,
            sftp=_credentials(server, host_key=_public_line(other)),
        )
    message = str(caught.value)
    assert f"127.0.0.1:{server.port}" in message
    assert SOURCE in message
    seen, expected = server.host_key.get_fingerprint("sha256"), other.get_fingerprint("sha256")
    assert seen in message and expected in message
    assert message.index(seen) < message.index(expected)  # "shows …, expected …"
    assert fingerprint(server.host_key.public_data) == seen
    assert waits == []  # not retried
    assert server.record.connections == 1
    assert server.record.logins == []  # the password never left for an unverified server
    assert _nothing_in(landing)


def test_wrong_password_is_refused_at_once(server: _Server, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    waits: list[float] = []
    with pytest.raises(FetchError, match="login refused") as caught:
        _fetch(
            server,
            landing,
            "/export/lheo/",
            sleep=waits.append,
            sftp=_credentials(server, password="not-the-password"),
        )
    assert f"{USER}@127.0.0.1:{server.port}" in str(caught.value)
    assert "not-the-password" not in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert waits == []
    assert server.record.connections == 1
    assert _nothing_in(landing)


@pytest.mark.parametrize("host_key", [None, "", "   "])
def test_no_pinned_host_key_is_refused(
    server: _Server, tmp_path: Path, host_key: str | None
) -> None:
    landing = tmp_path / "landing"
    waits: list[float] = []
    with pytest.raises(FetchError, match="no pinned host key"):
        _fetch(
            server,
            landing,
            "/export/lheo/",
            sleep=waits.append,
            sftp=_credentials(server, host_key=host_key),
        )
    assert server.record.connections == 0  # refused before any socket is opened
    assert waits == []
    assert _nothing_in(landing)


def test_sftp_location_without_credentials_names_conn_id(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"source smf-normandie: .*snapshot\.conn_id"):
        _fetch(server, tmp_path / "landing", "/export/lheo/", sftp=None)
    assert server.record.connections == 0


def test_login_in_the_url_is_refused_and_not_echoed(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="belongs in the connection") as caught:
        fetch_snapshot(
            SOURCE,
            location=f"sftp://{USER}:hunter2@127.0.0.1:{server.port}/export/lheo/",
            logical_date=TODAY,
            landing_zone=tmp_path / "landing",
            today=TODAY,
            sftp=_credentials(server),
        )
    assert "hunter2" not in str(caught.value)
    assert server.record.connections == 0


def test_missing_remote_file_is_not_retried(server: _Server, tmp_path: Path) -> None:
    waits: list[float] = []
    with pytest.raises(FetchError, match="not found on the server"):
        _fetch(server, tmp_path / "landing", "/export/lheo/absent.xml", sleep=waits.append)
    assert waits == []


def test_connection_refused_is_retried_and_bounded(server: _Server, tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    waits: list[float] = []
    with pytest.raises(FetchError, match="giving up after 3 attempts"):
        fetch_snapshot(
            SOURCE,
            location=f"sftp://127.0.0.1:{port}/export/lheo/",
            logical_date=TODAY,
            landing_zone=tmp_path / "landing",
            today=TODAY,
            retry=FAST,
            sleep=waits.append,
            sftp=_credentials(server),
        )
    assert len(waits) == 2


def test_local_write_error_is_a_landing_zone_error_not_retried(
    server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (server.root / "export" / "lheo" / "offres.xml").write_bytes(b"<lheo/>")

    def disk_full(*_args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(sftp_source.os, "fsync", disk_full)
    landing = tmp_path / "landing"
    waits: list[float] = []
    with pytest.raises(LandingZoneError, match=os.strerror(errno.ENOSPC)):
        _fetch(server, landing, "/export/lheo/", sleep=waits.append)
    assert waits == []
    assert not any(p.is_file() for p in landing.rglob("*"))  # staging removed, no archive


# --------------------------------------------------------------------------- resume


def _partial_sizes(landing: Path, name: str, sizes: list[int]) -> Callable[[float], None]:
    """A sleep callback recording the size of the partial download at each retry."""

    def sleep(_: float) -> None:
        parts = list((landing / SOURCE / TODAY.isoformat()).glob(f".fetch-*/{name}"))
        assert len(parts) == 1, parts
        sizes.append(parts[0].stat().st_size)

    return sleep


def test_cut_transfer_resumes_from_the_bytes_already_there(server: _Server, tmp_path: Path) -> None:
    data = random.Random(7).randbytes(1_000_000)
    (server.root / "export" / "lheo" / "offres.xml").write_bytes(data)
    server.record.cut_after = 256 * 1024
    landing = tmp_path / "landing"
    partials: list[int] = []
    got = _fetch(
        server,
        landing,
        "/export/lheo/",
        sleep=_partial_sizes(landing, "offres.xml", partials),
    )
    assert got.path.read_bytes() == data  # byte-identical
    assert got.sha256 == _sha(data)  # the whole file's, not the second part's
    assert got.path.with_name("offres.xml.sha256").read_text().split()[0] == _sha(data)

    assert len(partials) == 1  # one cut, one retry
    kept = partials[0]
    assert 0 < kept <= 256 * 1024
    first, second = server.record.reading_sessions()
    assert first == server.record.cut_session
    assert min(offset for offset, _ in server.record.reads_of(first)) == 0
    # The second attempt asked only for what was missing: from `kept` to the end.
    second_reads = server.record.reads_of(second)
    assert min(offset for offset, _ in second_reads) == kept
    covered = {offset for offset, _ in second_reads}
    assert kept in covered and all(offset >= kept for offset in covered)
    assert sorted(p.name for p in got.path.parent.iterdir()) == ["offres.xml", "offres.xml.sha256"]


def test_remote_file_changed_between_attempts_restarts_from_zero(
    server: _Server, tmp_path: Path
) -> None:
    remote = server.root / "export" / "lheo" / "offres.xml"
    first_data = random.Random(1).randbytes(600_000)
    remote.write_bytes(first_data)
    os.utime(remote, (1_800_000_000, 1_800_000_000))
    server.record.cut_after = 128 * 1024
    landing = tmp_path / "landing"
    # Same size, other bytes, a later mtime: only the mtime tells the file changed.
    new_data = random.Random(2).randbytes(600_000)
    partials: list[int] = []
    record_partial = _partial_sizes(landing, "offres.xml", partials)

    def sleep(delay: float) -> None:
        record_partial(delay)
        remote.write_bytes(new_data)  # the CARIF-OREF published again between the attempts
        os.utime(remote, (1_800_000_100, 1_800_000_100))

    got = _fetch(server, landing, "/export/lheo/offres.xml", sleep=sleep)
    assert partials and partials[0] > 0
    assert got.path.read_bytes() == new_data  # no old prefix glued to the new file
    assert got.sha256 == _sha(new_data)
    _, second = server.record.reading_sessions()
    assert min(offset for offset, _ in server.record.reads_of(second)) == 0


# --------------------------------------------------------------------------- Airflow connection


def test_credentials_from_an_airflow_connection(tmp_path: Path) -> None:
    """A real Airflow connection (AIRFLOW_CONN_<ID>), read in a fresh interpreter so that
    Airflow's configuration is not loaded into this test session."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    scan_line = f"carif.example {_public_line(key)}"  # as `ssh-keyscan` prints it
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_CARIF_SMF_SFTP": json.dumps(
            {
                "conn_type": "sftp",
                "login": USER,
                "password": PASSWORD,
                "host": "carif.example",
                "port": 22,
                "extra": {"host_key": scan_line, "key_file": "/keys/id_ed25519", "timeout": "7.5"},
            }
        ),
        "AIRFLOW_CONN_NO_KEY": json.dumps({"conn_type": "sftp", "login": USER, "password": "x"}),
        "AIRFLOW_CONN_CARIF_HTTP": json.dumps({"conn_type": "http", "login": "u", "password": "p"}),
    }
    script = """
import json
from pipelines.airflow_connections import http_headers, sftp_credentials_from_connection
from pipelines.fetch import FetchError

print(json.dumps({"http": http_headers("carif_http"), "none": http_headers(None)}))

c = sftp_credentials_from_connection("carif_smf_sftp")
print(json.dumps({"username": c.username, "password": c.password, "key_file": c.key_file,
                  "host_key": c.host_key, "timeout": c.timeout, "repr": repr(c)}))
try:
    sftp_credentials_from_connection("no_key")
except FetchError as exc:
    print(json.dumps({"error": str(exc)}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    http, got, refused = lines
    # The same module reads the HTTP sources' connections: basic auth of login:password.
    assert http == {"http": {"Authorization": "Basic dTpw"}, "none": None}
    assert got["username"] == USER and got["password"] == PASSWORD
    assert got["key_file"] == "/keys/id_ed25519"
    assert got["host_key"] == scan_line and got["timeout"] == 7.5
    assert PASSWORD not in got["repr"]  # a logged credentials object leaks no secret
    assert "no host_key extra" in refused["error"] and "ssh-keyscan" in refused["error"]
