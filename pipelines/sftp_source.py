"""Fetch a snapshot from a CARIF-OREF's SFTP server (``sftp://host[:port]/path``) for fetch.py.

The server must show the pinned host key (never trusted on first use, never added), checked
before the login is sent. The path is a file, or a folder whose newest file matching the
source's pattern is taken. A cut transfer resumes from the bytes already in the staging file
while the remote file keeps its size and mtime. Network failures are `_TransientError`
(fetch retries them); what waiting cannot fix is a `FetchError`. fetch.py imports this
module (and so paramiko) only for an SFTP source; nothing here imports Airflow.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import hashlib
import io
import json
import os
import posixpath
import socket
import stat
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import paramiko

from pipelines.fetch_errors import (
    SIDECAR_SUFFIX,
    FetchError,
    _landing_error,
    _safe_name,
    _TransientError,
)

DEFAULT_PORT = 22
DEFAULT_TIMEOUT = 120.0
# One SFTP read request (paramiko's maximum): a cut transfer loses at most this much.
_CHUNK = 32_768
_STATE_SUFFIX = ".sftp-state"
# paramiko names an RSA key "ssh-rsa" but negotiates it under its SHA-2 signature names.
_KEY_ALGORITHMS = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}


@dataclass(frozen=True, slots=True, kw_only=True)
class SftpCredentials:
    """How to log in to one SFTP server, and the host key it must show.

    `host_key` is the server's public key as in a known_hosts line, ``"keytype base64"``
    (a whole ``ssh-keyscan`` line is accepted too). Secrets stay out of the repr, so a
    logged object leaks nothing. `timeout` None means fetch_snapshot's timeout.
    """

    username: str
    password: str | None = field(default=None, repr=False)
    private_key: str | None = field(default=None, repr=False)  # the key's text (OpenSSH/PEM)
    key_file: str | None = None  # …or the path of a key file
    private_key_passphrase: str | None = field(default=None, repr=False)
    host_key: str | None = None
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class _Location:
    host: str
    port: int
    path: str

    def url(self, path: str | None = None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"sftp://{host}:{self.port}{urllib.parse.quote(path or self.path)}"


def fingerprint(key_blob: bytes) -> str:
    """The OpenSSH SHA256 fingerprint of a public key blob (what ``ssh-keygen -l`` shows)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key_blob).digest()).decode().rstrip("=")


def _parse(url: str, source: str) -> _Location:
    parts = urllib.parse.urlsplit(url)
    if parts.username or parts.password:  # checked first, and never echoed: a password?
        raise FetchError(f"source {source}: the SFTP login belongs in the connection, not the URL")
    if parts.scheme != "sftp" or not parts.hostname:
        raise FetchError(f"source {source}: {url!r} is not an sftp://host[:port]/path URL")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise FetchError(f"source {source}: invalid port in the SFTP location") from exc
    return _Location(parts.hostname, port, urllib.parse.unquote(parts.path) or "/")


def _pinned_key(credentials: SftpCredentials, where: str, source: str) -> paramiko.PKey:
    parts = (credentials.host_key or "").split()
    if not parts:
        raise FetchError(
            f"source {source}: no pinned host key for {where}: refusing to connect to a server "
            "that cannot be verified; set the connection's host_key extra (docs/sftp-sources.md)"
        )
    if len(parts) >= 3 and not parts[0].startswith(("ssh-", "ecdsa-", "sk-")):
        parts = parts[1:]  # a whole known_hosts / ssh-keyscan line: "host keytype base64"
    try:
        return paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1], validate=True))
    except (IndexError, ValueError, paramiko.SSHException, paramiko.pkey.UnknownKeyType) as exc:
        raise FetchError(
            f"source {source}: the pinned host key for {where} is not 'keytype base64' ({exc})"
        ) from exc


def _private_key(credentials: SftpCredentials, where: str, source: str) -> paramiko.PKey | None:
    passphrase = credentials.private_key_passphrase
    try:
        if credentials.key_file:
            return paramiko.PKey.from_path(credentials.key_file, password=passphrase)
        if credentials.private_key:
            # The text does not say its type; try each, as the Airflow SSH provider does.
            for kind in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
                with contextlib.suppress(paramiko.SSHException, ValueError):
                    text = io.StringIO(credentials.private_key)
                    return kind.from_private_key(text, password=passphrase)
            raise FetchError(f"source {source}: the private key for {where} cannot be read")
    except (OSError, TypeError, ValueError, paramiko.SSHException) as exc:
        raise FetchError(f"source {source}: cannot load the key for {where}: {exc}") from exc
    return None


def _authenticate(
    transport: paramiko.Transport, cred: SftpCredentials, pkey: paramiko.PKey | None, where: str
) -> str | None:
    """None once logged in, else why the server refused (waiting will not change that)."""
    try:  # the key if there is one, then the password if the server still asks for it
        remaining = transport.auth_publickey(cred.username, pkey) if pkey else ["password"]
        if not transport.is_authenticated() and cred.password and "password" in remaining:
            transport.auth_password(cred.username, cred.password)
    except paramiko.AuthenticationException as exc:
        return str(exc) or type(exc).__name__
    return None if transport.is_authenticated() else "no password or key was accepted"


@contextlib.contextmanager
def _session(loc: _Location, cred: SftpCredentials, source: str) -> Iterator[paramiko.SFTPClient]:
    where = f"{cred.username}@{loc.host}:{loc.port}"
    pinned = _pinned_key(cred, where, source)  # refuse before opening any socket
    pkey = _private_key(cred, where, source)
    timeout = cred.timeout or DEFAULT_TIMEOUT
    with _remote_errors(where, source):
        sock = socket.create_connection((loc.host, loc.port), timeout=timeout)
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = transport.handshake_timeout = transport.auth_timeout = timeout
        # Ask for the pinned key's type first, so a server with several keys shows that one.
        options = transport.get_security_options()
        wanted = _KEY_ALGORITHMS.get(pinned.get_name(), (pinned.get_name(),))
        options.key_types = sorted(options.key_types, key=lambda name: name not in wanted)
        with _remote_errors(where, source):
            transport.start_client(timeout=timeout)
        seen = transport.get_remote_server_key()
        if seen.asbytes() != pinned.asbytes():  # the kex proved the server holds `seen`
            raise FetchError(
                f"source {source}: host key of {loc.host}:{loc.port} is not the pinned one: the "
                f"server shows {seen.get_name()} {fingerprint(seen.asbytes())}, expected "
                f"{pinned.get_name()} {fingerprint(pinned.asbytes())}. Refused before login; "
                "if the key really changed, check it with the CARIF-OREF and update host_key"
            )
        with _remote_errors(where, source):
            refused = _authenticate(transport, cred, pkey, where)
            sftp = None if refused else paramiko.SFTPClient.from_transport(transport)
            channel = sftp.get_channel() if sftp else None
        if refused:
            raise FetchError(f"source {source}: SFTP login refused for {where}: {refused}")
        if sftp is None or channel is None:
            raise _TransientError(f"{where}: the server opened no SFTP channel")
        channel.settimeout(timeout)  # a stalled server is a timeout, not a hang
        yield sftp
    finally:
        transport.close()
        sock.close()  # a transport that never started does not close its socket


@contextlib.contextmanager
def _remote_errors(url: str, source: str) -> Iterator[None]:
    """Missing or forbidden files fail at once; anything else on the wire is transient."""
    try:
        yield
    except FileNotFoundError as exc:
        raise FetchError(f"source {source}: {url} not found on the server") from exc
    except PermissionError as exc:
        raise FetchError(f"source {source}: {url}: permission denied by the server") from exc
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise _TransientError(f"{url}: {exc}") from exc


def _pick(sftp: paramiko.SFTPClient, loc: _Location, pattern: str, source: str) -> str:
    """The path itself, or the newest file matching `pattern` in that folder."""
    with _remote_errors(loc.url(), source):
        if not stat.S_ISDIR(sftp.stat(loc.path).st_mode or 0):
            return loc.path
        candidates = []
        for listed in sftp.listdir_attr(loc.path):
            path, attrs = posixpath.join(loc.path, listed.filename), listed
            if stat.S_ISLNK(listed.st_mode or 0):  # a link counts as what it points to
                with contextlib.suppress(FileNotFoundError):
                    attrs = sftp.stat(path)
            if (
                stat.S_ISREG(attrs.st_mode or 0)
                and fnmatch.fnmatch(posixpath.basename(path), pattern)
                and not path.endswith((".part", ".tmp", SIDECAR_SUFFIX))
            ):
                candidates.append((attrs.st_mtime or 0, path))
    if not candidates:
        raise FetchError(f"source {source}: no file matching {pattern!r} in {loc.url()}")
    return max(candidates)[1]


@contextlib.contextmanager
def _landing(target: Path) -> Iterator[None]:
    """Local write errors are the landing zone's (not retried), as in fetch's copies."""
    try:
        yield
    except OSError as exc:
        raise _landing_error("copy", target, exc) from exc


def _transfer(sftp: paramiko.SFTPClient, url: str, remote: str, target: Path, source: str) -> str:
    with _remote_errors(url, source):
        attrs = sftp.stat(remote)
    size = attrs.st_size or 0
    identity: dict[str, object] = {"path": remote, "size": size, "mtime": attrs.st_mtime}
    state = target.with_name(target.name + _STATE_SUFFIX)
    try:  # the bytes already in `target` are a prefix of this very file, or we start again
        same = json.loads(state.read_text(encoding="utf-8")) == identity
        done = offset = target.stat().st_size if same and target.stat().st_size <= size else 0
    except (OSError, ValueError):
        done = offset = 0
    digest = hashlib.sha256()
    with _landing(target):  # remote errors are converted first, so only local ones reach it
        if offset:  # the sha256 returned is the whole file's: hash the part already here
            with target.open("rb") as part:
                for chunk in iter(lambda: part.read(1 << 20), b""):
                    digest.update(chunk)
        state.write_text(json.dumps(identity), encoding="utf-8")
        with target.open("ab" if offset else "wb") as out:
            with _remote_errors(url, source):
                stream = sftp.open(remote, "rb")
                stream.seek(offset)
                stream.prefetch(size, max_concurrent_requests=64)  # pipelined, bounded memory
            with stream:
                while True:
                    with _remote_errors(url, source):
                        chunk = stream.read(_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
            if done != size:  # paramiko turns a dropped connection into a short read
                raise _TransientError(f"{url}: transfer cut after {done} of {size} bytes")
            out.flush()
            os.fsync(out.fileno())
        state.unlink(missing_ok=True)
    return digest.hexdigest()


def sftp_download(
    url: str,
    target: Path,
    credentials: SftpCredentials,
    *,
    pattern: str = "*",
    source: str = "sftp",
) -> str:
    """Copy ``sftp://host[:port]/path`` (a file, or a folder's newest file matching `pattern`)
    into `target`; the sha256 of the whole file. Called again with the same `target` after a
    cut, it goes on from the bytes already there while the remote file keeps its size and
    mtime, else it starts again from 0."""
    loc = _parse(url, source)
    with _session(loc, credentials, source) as sftp:
        remote = _pick(sftp, loc, pattern, source)
        return _transfer(sftp, loc.url(remote), remote, target, source)


def sftp_fetch_action(
    source: str, location: str, pattern: str, cred: SftpCredentials | None, timeout: float
) -> tuple[str, Callable[[Path], str]]:
    """For `pipelines.fetch`: the archived name, and the (retried) copy into a given path.
    It connects to pick the file (listing a folder), so fetch retries this call too."""
    if cred is None:
        raise FetchError(
            f"source {source}: {location} is an SFTP location but no credentials were given: "
            "set snapshot.conn_id in config/sources.yaml (docs/sftp-sources.md)"
        )
    cred = cred if cred.timeout is not None else replace(cred, timeout=timeout)
    loc = _parse(location, source)
    with _session(loc, cred, source) as sftp:
        remote = _pick(sftp, loc, pattern, source)
    name, url = _safe_name(posixpath.basename(remote), source), loc.url(remote)
    return name, lambda target: sftp_download(url, target, cred, source=source)


__all__ = ["SftpCredentials", "fingerprint", "sftp_download", "sftp_fetch_action"]
