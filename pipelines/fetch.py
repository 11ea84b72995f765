"""Fetch a source's nightly LHEO snapshot (and its KAIROS exports) into the landing zone.

A source's offer is a file in a folder (local, NFS/SMB), at an HTTP(S) URL, by SFTP (see
sftp_source.py) or at an fsspec URL (``s3://``…). Each file is archived, never modified::

    <landing zone>/<source>/<YYYY-MM-DD>/<file>            the snapshot as received
    <landing zone>/<source>/<YYYY-MM-DD>/<file>.sha256     "<hex>  <file>" (sha256sum format)
    <landing zone>/<source>/<YYYY-MM-DD>/kairos/<export>   the KAIROS exports of that night
    <landing zone>/<source>/<YYYY-MM-DD>/kairos/<export>.sha256

Rules that make reruns and backfills safe:

* A date that is already archived is never fetched again: its archive is reused (after
  checking the sha256), so re-running a date gives the same bytes and changes nothing.
* A date in the past (a backfill, a catch-up after an outage) is served from its archive
  only. The source holds *today's* file; loading it as yesterday's offer would close or
  reopen sessions on the wrong day, so a missing archive is an error, never a fetch.
* Paths that come from people (the trigger form's ``snapshot_file``) must resolve inside
  their allowed folder (`ensure_inside`); symlinks and ``..`` are resolved first.

Transient failures (connection refused, timeouts, HTTP 5xx/408/429) are retried with a
bounded exponential backoff; anything else fails at once with the source named.
Nothing here imports Airflow: the DAG tasks and the tests call these functions directly.
"""

from __future__ import annotations

import contextlib
import datetime
import fnmatch
import functools
import hashlib
import logging
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal, TypeVar
from zoneinfo import ZoneInfo

from core import settings
from core.db import PROJECT_ROOT
from pipelines.fetch_errors import (
    SIDECAR_SUFFIX,
    ChecksumMismatchError,
    FetchError,
    LandingZoneError,
    PathOutsideAllowedFolderError,
    SnapshotNotArchivedError,
    _landing_error,
    _safe_name,
    _TransientError,
)

if TYPE_CHECKING:
    from pipelines.sftp_source import SftpCredentials

log = logging.getLogger(__name__)

PARIS = ZoneInfo("Europe/Paris")
DEFAULT_LANDING_ZONE = PROJECT_ROOT / "var" / "landing"
DEFAULT_SNAPSHOT_PATTERN = "*.xml*"
DEFAULT_EXPORTS_SUBDIR = "kairos"
_CHUNK = 1 << 20
_T = TypeVar("_T")

ExportKind = Literal["adherents", "training-plans", "appointments", "modalities"]

# File-name prefixes of the KAIROS exports (case-insensitive, `-`/`_` equivalent). The
# first match wins, so the longer, more specific prefixes come first.
EXPORT_KIND_PREFIXES: tuple[tuple[str, ExportKind], ...] = (
    ("training_plans", "training-plans"),
    ("plans_formation", "training-plans"),
    ("plan_formation", "training-plans"),
    ("appointments", "appointments"),
    ("rendez_vous", "appointments"),
    ("rdv", "appointments"),
    ("adherents", "adherents"),
    ("modalites", "modalities"),
    ("modalities", "modalities"),
)


@dataclass(frozen=True, slots=True)
class FetchedSnapshot:
    """A snapshot in the landing zone (or, for a dry run, in a scratch folder)."""

    path: Path
    sha256: str
    reused: bool


@dataclass(frozen=True, slots=True)
class FetchedExport:
    """A KAIROS export file archived next to the snapshot of the same night."""

    path: Path
    kind: ExportKind
    sha256: str
    reused: bool


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff: waits `base`, 2·base, 4·base… capped at `cap`."""

    attempts: int = 4
    base_seconds: float = 2.0
    cap_seconds: float = 60.0

    def delays(self) -> Iterator[float]:
        for attempt in range(max(self.attempts, 1) - 1):
            yield min(self.base_seconds * (2**attempt), self.cap_seconds)


# --------------------------------------------------------------------------- paths


def landing_zone_from_env() -> Path:
    """KAIROS_LANDING_ZONE if set, else var/landing in the project."""
    return settings.path("KAIROS_LANDING_ZONE", DEFAULT_LANDING_ZONE)


def ensure_inside(path: str | os.PathLike[str], root: str | os.PathLike[str], *, what: str) -> Path:
    """`path` resolved, if it lies inside `root` (also resolved); else a clear refusal.

    Relative paths are taken relative to `root`. Resolving first means ``..`` and
    symlinks pointing out of the folder are refused too.
    """
    root_path = Path(root).resolve()
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = root_path / candidate
    resolved = candidate.resolve()
    if not resolved.is_relative_to(root_path):
        raise PathOutsideAllowedFolderError(
            f"{what} {os.fspath(path)!r} is outside the allowed folder {root_path} — refused"
        )
    return resolved


def check_source_name(source: str) -> str:
    """A source name is one path component of the landing zone: no separators, no dots."""
    if (
        not source
        or source in (".", "..")
        or "/" in source
        or "\\" in source
        or "\x00" in source
        or source.startswith(".")
    ):
        raise FetchError(f"invalid source name {source!r}: it must be a plain folder name")
    return source


def archive_dir(landing_zone: Path, source: str, day: datetime.date) -> Path:
    """`<landing zone>/<source>/<YYYY-MM-DD>`, guaranteed inside the landing zone."""
    root = Path(landing_zone).resolve()  # a relative landing zone is not joined twice
    folder = root / check_source_name(source) / day.isoformat()
    return ensure_inside(folder, root, what="archive folder")


def paris_today(now: datetime.datetime | None = None) -> datetime.date:
    """Today's date in Europe/Paris: the day the sources publish in."""
    return (now or datetime.datetime.now(tz=PARIS)).astimezone(PARIS).date()


# --------------------------------------------------------------------------- checksums


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


def read_sidecar(path: Path) -> str:
    text = sidecar_path(path).read_text(encoding="ascii").split()
    if not text:
        raise ChecksumMismatchError(f"{sidecar_path(path)}: empty checksum file")
    return text[0].lower()


def verify_archived(path: Path) -> str:
    """The sha256 of an archived file, checked against its sidecar."""
    expected = read_sidecar(path)
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumMismatchError(
            f"{path}: sha256 {actual} differs from the archived {expected}: "
            "the archive was modified; restore it or delete the date folder to refetch"
        )
    return actual


def _write_sidecar(path: Path, digest: str) -> None:
    sidecar = sidecar_path(path)
    tmp = sidecar.with_name(sidecar.name + ".part")
    tmp.write_text(f"{digest}  {path.name}\n", encoding="ascii")
    os.replace(tmp, sidecar)


# --------------------------------------------------------------------------- copying


def _is_http(location: str) -> bool:
    return urllib.parse.urlsplit(location).scheme in ("http", "https")


def _is_url(location: str) -> bool:
    scheme = urllib.parse.urlsplit(location).scheme
    # "C:\\…" has a one-letter scheme on Windows; a real URL scheme is longer.
    return len(scheme) > 1


def _copy_stream(source: IO[bytes], target: Path) -> str:
    """Copy and hash. Reading errors propagate as they are (the caller decides whether they
    are transient); writing errors (ENOSPC, EACCES, EROFS) are a `LandingZoneError`."""
    digest = hashlib.sha256()
    try:
        out = target.open("wb")
    except OSError as exc:
        raise _landing_error("copy", target, exc) from exc
    with out:
        for chunk in iter(lambda: source.read(_CHUNK), b""):
            digest.update(chunk)
            try:
                out.write(chunk)
            except OSError as exc:
                raise _landing_error("copy", target, exc) from exc
        try:
            out.flush()
            os.fsync(out.fileno())
        except OSError as exc:
            raise _landing_error("copy", target, exc) from exc
    return digest.hexdigest()


def _archive(
    staging: Path, name: str, target_root: Path, digest_of: Callable[[Path], str]
) -> tuple[Path, str]:
    """Copy into the staging folder, move into place, then write the sidecar (last, so a
    file without sidecar is never taken for an archive). Landing-zone errors are clear."""
    part = staging / name
    digest = digest_of(part)
    final = target_root / name
    try:
        os.replace(part, final)
        try:
            _write_sidecar(final, digest)
        except OSError:
            final.unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise _landing_error("archive", final, exc) from exc
    return final, digest


def _http_get(url: str, target: Path, *, timeout: float, headers: Mapping[str, str] | None) -> str:
    request = urllib.request.Request(url, headers=dict(headers or {}))  # noqa: S310  # scheme checked by caller
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return _copy_stream(response, target)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code in (408, 429):
            raise _TransientError(f"HTTP {exc.code} {exc.reason}") from exc
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise _TransientError(str(getattr(exc, "reason", exc))) from exc


def _fsspec_get(url: str, target: Path) -> str:
    import fsspec  # only URL sources need it

    try:
        with fsspec.open(url, "rb") as stream:
            return _copy_stream(stream, target)
    except FileNotFoundError as exc:
        raise FetchError(f"{url}: not found") from exc
    except (OSError, TimeoutError) as exc:
        raise _TransientError(str(exc)) from exc


def _local_get(path: Path, target: Path) -> str:
    try:
        with path.open("rb") as stream:
            return _copy_stream(stream, target)
    except FileNotFoundError as exc:
        raise FetchError(f"{path}: not found") from exc
    except OSError as exc:  # a network mount that drops out is worth another try
        raise _TransientError(str(exc)) from exc


def _with_retries(
    what: str, action: Callable[[], _T], retry: RetryPolicy, sleep: Callable[[float], None]
) -> _T:
    delays = list(retry.delays())
    for attempt in range(len(delays) + 1):
        try:
            return action()
        except _TransientError as exc:
            if attempt >= len(delays):
                raise FetchError(f"{what}: giving up after {attempt + 1} attempts: {exc}") from exc
            log.warning(
                "%s: attempt %d failed (%s); retrying in %.1fs",
                what,
                attempt + 1,
                exc,
                delays[attempt],
            )
            sleep(delays[attempt])
    raise AssertionError("unreachable")  # pragma: no cover


def _pick_local_file(folder: Path, pattern: str, source: str) -> Path:
    """The newest file matching `pattern` in `folder` (sources drop one file per night)."""
    candidates = [
        p
        for p in folder.iterdir()
        if p.is_file()
        and fnmatch.fnmatch(p.name, pattern)
        and not p.name.endswith((".part", ".tmp", SIDECAR_SUFFIX))
    ]
    if not candidates:
        raise FetchError(f"source {source}: no file matching {pattern!r} in {folder}")
    return max(candidates, key=lambda p: (p.stat().st_mtime, p.name))


@contextlib.contextmanager
def _staging(folder: Path) -> Iterator[Path]:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=folder))
    except OSError as exc:
        raise _landing_error("staging", folder, exc) from exc
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _archived_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and sidecar_path(p).is_file() and not p.name.endswith(SIDECAR_SUFFIX)
    )


# --------------------------------------------------------------------------- snapshots


def fetch_snapshot(
    source: str,
    *,
    location: str,
    logical_date: datetime.date,
    landing_zone: Path,
    pattern: str = DEFAULT_SNAPSHOT_PATTERN,
    today: datetime.date | None = None,
    retry: RetryPolicy = RetryPolicy(),  # frozen dataclass, safe default
    timeout: float = 120.0,
    headers: Mapping[str, str] | None = None,
    dry_run: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    sftp: SftpCredentials | None = None,
) -> FetchedSnapshot:
    """The snapshot of `source` for `logical_date`, archived in the landing zone.

    `location` is a folder (the newest file matching `pattern` is taken), a file, or a URL
    (``sftp://`` needs `sftp`). An archived date is reused; a past date without an archive
    raises `SnapshotNotArchivedError`. With `dry_run`, nothing is written to the landing
    zone: a fresh fetch goes to a scratch folder that the caller may delete.
    """
    check_source_name(source)
    today = today or paris_today()
    folder = archive_dir(landing_zone, source, logical_date)

    archived = [p for p in _archived_files(folder) if fnmatch.fnmatch(p.name, pattern)]
    if archived:
        if len(archived) > 1:
            names = ", ".join(p.name for p in archived)
            raise FetchError(
                f"source {source}: {len(archived)} archived snapshots for "
                f"{logical_date} ({names}); keep one or pass snapshot_file"
            )
        path = archived[0]
        log.info("source %s: reusing the archived snapshot %s", source, path)
        return FetchedSnapshot(path=path, sha256=verify_archived(path), reused=True)

    if logical_date < today:
        raise SnapshotNotArchivedError(
            f"source {source}: no archived snapshot for {logical_date} in {folder}; "
            f"the source only holds today's ({today}) file, which must not be loaded as "
            f"{logical_date}'s. Put that day's file there with `kairos-sync archive FILE "
            f"--source {source} --date {logical_date}` (it writes the .sha256), then rerun."
        )
    if logical_date > today:
        raise FetchError(
            f"source {source}: logical date {logical_date} is in the future (today {today})"
        )

    target_root = Path(tempfile.mkdtemp(prefix=f"kairos-dry-{source}-")) if dry_run else folder
    pick = functools.partial(_fetch_action, source, location, pattern, timeout, headers, sftp)
    name, copy = _with_retries(src := f"source {source} ({location})", pick, retry, sleep)
    with _staging(target_root) as staging:  # (SFTP connects to pick the file: retried too)
        final, digest = _archive(
            staging, name, target_root, lambda p: _with_retries(src, lambda: copy(p), retry, sleep)
        )
    log.info("source %s: fetched %s (sha256 %s)", source, final, digest)
    return FetchedSnapshot(path=final, sha256=digest, reused=False)


def _fetch_action(
    source: str,
    location: str,
    pattern: str,
    timeout: float,
    headers: Mapping[str, str] | None,
    sftp: SftpCredentials | None = None,
) -> tuple[str, Callable[[Path], str]]:
    """The archived file name and the callable copying the source into a given path."""
    if urllib.parse.urlsplit(location).scheme == "sftp":
        from pipelines.sftp_source import sftp_fetch_action  # paramiko: SFTP sources only

        return sftp_fetch_action(source, location, pattern, sftp, timeout)
    if _is_url(location) and not location.startswith("file://"):
        name = _safe_name(Path(urllib.parse.urlsplit(location).path).name, source)
        if not _is_http(location):
            return name, lambda target: _fsspec_get(location, target)
        return name, lambda target: _http_get(location, target, timeout=timeout, headers=headers)
    local = Path(location.removeprefix("file://"))
    if not local.exists():
        raise FetchError(f"source {source}: location {local} does not exist (not mounted?)")
    picked = _pick_local_file(local, pattern, source) if local.is_dir() else local
    return _safe_name(picked.name, source), lambda target: _local_get(picked, target)


def snapshot_from_param(value: str, *, source: str, landing_zone: Path) -> FetchedSnapshot:
    """A snapshot chosen in the trigger form: it must lie inside `<landing zone>/<source>/`.

    Anything else (another source's folder, ``../``, an absolute path elsewhere, a symlink
    out of the landing zone) is refused before the file is opened.
    """
    root = Path(landing_zone) / check_source_name(source)
    path = ensure_inside(value, root, what=f"snapshot_file for source {source}")
    if not path.is_file():
        raise FetchError(f"snapshot_file {path} does not exist")
    digest = verify_archived(path) if sidecar_path(path).is_file() else sha256_file(path)
    return FetchedSnapshot(path=path, sha256=digest, reused=True)


# --------------------------------------------------------------------------- KAIROS exports


def export_kind(name: str) -> ExportKind | None:
    """The export kind a file name announces, or None for an unrelated file."""
    normalised = name.lower().replace("-", "_")
    for prefix, kind in EXPORT_KIND_PREFIXES:
        if normalised.startswith(prefix):
            return kind
    return None


def fetch_kairos_exports(
    source: str,
    *,
    exports_location: str | None,
    logical_date: datetime.date,
    landing_zone: Path,
    pattern: str = "*.csv",
    today: datetime.date | None = None,
    dry_run: bool = False,
) -> list[FetchedExport]:
    """The KAIROS exports of `source` for `logical_date`, archived under `…/<date>/kairos/`.

    Exports are CSV files in a local/network folder (`kairos_exports.location` in
    config/sources.yaml, default `<snapshot folder>/kairos`), named after their kind
    (`adherents*.csv`, `training-plans*.csv`/`plans-formation*.csv`,
    `appointments*.csv`/`rdv*.csv`). A past date uses its archive only (possibly empty):
    the folder holds today's exports, not that day's. Files of unknown kind are skipped.
    """
    check_source_name(source)
    today = today or paris_today()
    folder = archive_dir(landing_zone, source, logical_date) / DEFAULT_EXPORTS_SUBDIR
    archived = _archived_files(folder)
    if archived or logical_date < today:
        found = [(p, export_kind(p.name)) for p in archived]
        return [
            FetchedExport(path=p, kind=k, sha256=verify_archived(p), reused=True)
            for p, k in found
            if k is not None
        ]
    if exports_location is None:
        return []
    location = Path(exports_location.removeprefix("file://"))
    if not location.is_dir():
        log.info("source %s: no KAIROS export folder at %s", source, location)
        return []
    files = sorted(
        p
        for p in location.iterdir()
        if p.is_file() and fnmatch.fnmatch(p.name, pattern) and export_kind(p.name)
    )
    target_root = Path(tempfile.mkdtemp(prefix=f"kairos-dry-{source}-")) if dry_run else folder
    results: list[FetchedExport] = []
    with _staging(target_root) as staging:
        for file in files:
            final, digest = _archive(
                staging, file.name, target_root, functools.partial(_local_get, file)
            )
            kind = export_kind(file.name)
            assert kind is not None  # filtered above
            results.append(FetchedExport(path=final, kind=kind, sha256=digest, reused=False))
    return results


def default_exports_location(location: str) -> str | None:
    """`<location>/kairos` for a folder source; None for a URL (configure it explicitly)."""
    if _is_url(location) and not location.startswith("file://"):
        return None
    local = Path(location.removeprefix("file://"))
    folder = local if local.is_dir() or not local.suffix else local.parent
    return str(folder / DEFAULT_EXPORTS_SUBDIR)


def describe(snapshot: FetchedSnapshot | FetchedExport) -> dict[str, str | bool]:
    """A JSON-friendly summary (for XCom and logs)."""
    data: dict[str, str | bool] = {
        "path": str(snapshot.path),
        "sha256": snapshot.sha256,
        "reused": snapshot.reused,
    }
    if isinstance(snapshot, FetchedExport):
        data["kind"] = snapshot.kind
    return data


__all__: Sequence[str] = (
    "ChecksumMismatchError",
    "FetchError",
    "FetchedExport",
    "FetchedSnapshot",
    "LandingZoneError",
    "PathOutsideAllowedFolderError",
    "RetryPolicy",
    "SnapshotNotArchivedError",
    "archive_dir",
    "default_exports_location",
    "ensure_inside",
    "fetch_kairos_exports",
    "fetch_snapshot",
    "landing_zone_from_env",
    "snapshot_from_param",
)
