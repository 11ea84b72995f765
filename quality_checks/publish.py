"""Files on disk whole or not at all: a folder swapped in by renames, a file replaced atomically.

`staged_folder(target)` yields an empty folder beside `target` (same file system, so that a
rename can move it); the caller writes every file into it. On success the files and the
folder are fsynced and the folder takes `target`'s place: the old one is renamed aside,
the new one renamed in, the old one removed. On any failure (a full disk, a read-only
file system, an exception of the caller) the staging folder is removed and `target` is
exactly as before. A reader therefore finds the previous folder or the new one, never a
mixture (between the two renames there is, for an instant, no folder at all).

`write_atomic(path, data)`: a temporary file in the same folder, fsynced, then
`os.replace`: `path` holds the old bytes or the new ones, never a part of them.

A process killed (SIGKILL, power loss) mid-write leaves its `.NAME.new-*` folder (or its
`.NAME.old-*` one, between the renames) beside the target; nothing reads them.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's entry to the disk (a rename is durable once its folder
    is fsynced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` whole: temp file beside it, fsync, os.replace, fsync."""
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """Yield a folder to fill; on success it replaces `target` whole (module docstring)."""
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(target))
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.new-", dir=parent))
    try:
        # mkdtemp makes it 0700: keep the permissions readers of the old folder had.
        mode = stat.S_IMODE(target.stat().st_mode) if target.is_dir() else 0o755
        os.chmod(staging, mode)
        yield staging
        for path in staging.iterdir():
            fsync_path(path)
        fsync_path(staging)
        _swap(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap(staging: Path, target: Path) -> None:
    """Rename `staging` to `target`, the old `target` (if any) aside first: Linux renames a
    folder only onto an empty one, so this takes two renames. If the second fails, the old
    folder is put back."""
    backup: Path | None = None
    if target.exists():
        backup = staging.with_name(staging.name.replace(".new-", ".old-", 1))
        os.rename(target, backup)
    try:
        os.rename(staging, target)
    except BaseException:
        if backup is not None:
            os.rename(backup, target)
        raise
    try:
        fsync_path(target.parent)
    finally:
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)


__all__ = ["file_digest", "fsync_path", "staged_folder", "write_atomic"]
