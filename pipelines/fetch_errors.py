"""What the fetchers share: their errors, and the rules for the names they archive.

A base of pipelines/fetch.py and of the fetchers it dispatches to (pipelines/sftp_source.py),
so that a fetcher never imports the module that calls it.
"""

from __future__ import annotations

from pathlib import Path

SIDECAR_SUFFIX = ".sha256"


class FetchError(Exception):
    """A snapshot could not be fetched or reused; the message names the source."""


class SnapshotNotArchivedError(FetchError):
    """A past date has no archived snapshot (and today's file must not stand in for it)."""


class PathOutsideAllowedFolderError(FetchError, ValueError):
    """A path given by a person escapes the folder it must stay in."""


class ChecksumMismatchError(FetchError):
    """An archived file no longer matches its sha256 sidecar."""


class LandingZoneError(FetchError):
    """The landing zone cannot be written (permission denied, disk full, read-only).

    Not retried: waiting does not free a disk. Nothing half-written is left behind (the
    copy goes to a staging folder that is removed, the sidecar comes last)."""


def _landing_error(what: str, target: Path, exc: OSError) -> LandingZoneError:
    return LandingZoneError(
        f"{what}: cannot write {target} in the landing zone: {exc.strerror or exc}"
        f" (errno {exc.errno}); nothing was archived"
    )


class _TransientError(Exception):
    """A failure worth retrying (network hiccup, 5xx, timeout)."""


def _safe_name(name: str, source: str) -> str:
    if not name or name in (".", "..") or name.endswith(SIDECAR_SUFFIX):
        raise FetchError(f"source {source}: cannot derive a file name from the location")
    return name
