"""The fast paths of an LHEO snapshot load (pipelines/load.py), and how many workers.

* The reload fast path: when the file's bytes, the source's configuration and the loader's
  code equal those of the source's last successful load (`input_fingerprint`), the load is
  recorded as a `noop` without reading the file (`unchanged_input`).
* The per-formation one: the digests a source's loads recorded stay valid as long as the
  loader's code and the source's configuration do (`digest_basis`,
  transforms/formation_digest.py).
* Large files are read, validated and mapped by worker processes (`worker_count`,
  pipelines/load_parallel.py).
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Connection, text

from core import settings
from core.config import SourceConfig
from core.history import db_timestamp
from pipelines.load_steps import RUN_KIND, LedgerEntry

PARALLEL_MIN_BYTES = 8_000_000  # below this, starting worker processes costs more than it saves
# What decides the rows a file gives: the code of the reader, extraction, mapping and load
# (every module of transforms/, pipelines/load*.py, the history helpers), the schemas and
# sql/load.
_CODE_FILES = ("core/history.py",)


def worker_count(file: Path, workers: int | None) -> int:
    if workers is None:
        configured = settings.get("KAIROS_LOAD_WORKERS")
        if configured:
            workers = int(configured)
        else:
            cores = os.cpu_count() or 1
            big = file.exists() and file.stat().st_size >= PARALLEL_MIN_BYTES
            workers = min(cores, 4) if cores > 1 and big else 0
    return workers if workers > 1 else 0


@lru_cache(maxsize=1)
def code_digest() -> str:
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    paths = [root / name for name in _CODE_FILES]
    paths += sorted((root / "pipelines").glob("load*.py"))
    paths += sorted((root / "transforms").glob("*.py"))
    paths += sorted((root / "sql" / "load").glob("*.sql"))
    paths += sorted((root / "lheo_schemas").glob("*.xsd"))
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()


def digest_basis(config: SourceConfig) -> str:
    """What makes a formation's rows a function of its bytes: the source's configuration
    and the loader's code (transforms/formation_digest.py)."""
    basis = json.dumps([repr(config), code_digest()], ensure_ascii=False, default=str)
    return hashlib.sha256(basis.encode()).hexdigest()


def input_fingerprint(sha256: str, config: SourceConfig, full_snapshot: bool) -> str:
    """What a load's result depends on besides the database: the file's bytes (not its name),
    the source's configuration, full or partial snapshot, and the loader's code."""
    basis = json.dumps(
        [sha256, repr(config), full_snapshot, code_digest()], ensure_ascii=False, default=str
    )
    return hashlib.sha256(basis.encode()).hexdigest()


def unchanged_input(
    conn: Connection,
    file: Path,
    config: SourceConfig,
    entry: LedgerEntry,
    fingerprint: str,
    now: datetime,
) -> bool:
    """The reload fast path. When the source's last successful load (`succeeded` or `noop`;
    failed runs changed nothing) had the same input fingerprint, reading the file again
    would stage exactly the rows it left in place: nothing would be written. Record a
    `noop` carrying that run's counts and a copy of its quarantine, without reading."""
    previous = (
        conn.execute(
            text(
                "SELECT id, counts_json, lheo_version, formations_read, formations_valid,"
                " formations_quarantined, sessions_inserted, sessions_updated,"
                " sessions_unchanged FROM run_ledger WHERE run_kind = :kind AND source = :source"
                " AND status IN ('succeeded', 'noop') AND id < :run_id ORDER BY id DESC LIMIT 1"
            ),
            {"kind": RUN_KIND, "source": config.name, "run_id": entry.run_id},
        )
        .mappings()
        .first()
    )
    if previous is None:
        return False
    try:
        counts = json.loads(previous["counts_json"] or "{}")
    except ValueError:
        return False
    if not isinstance(counts, dict) or counts.get("input_fingerprint") != fingerprint:
        return False
    stamp = db_timestamp(conn, now)
    conn.execute(
        text(
            "INSERT INTO quarantine (run_id, source, file, record_kind, record_key, line, path,"
            " reasons, created_at) SELECT :run_id, source, :file, record_kind, record_key, line,"
            " path, reasons, :now FROM quarantine WHERE run_id = :previous ORDER BY id"
        ),
        {"run_id": entry.run_id, "file": str(file), "now": stamp, "previous": previous["id"]},
    )
    entry.status = "noop"
    entry.lheo_version = previous["lheo_version"]
    entry.formations_read = int(previous["formations_read"] or 0)
    entry.formations_valid = int(previous["formations_valid"] or 0)
    entry.formations_quarantined = int(previous["formations_quarantined"] or 0)
    entry.sessions_unchanged = sum(
        int(previous[k] or 0)
        for k in ("sessions_inserted", "sessions_updated", "sessions_unchanged")
    )
    entry.counts["fast_path_same_input_as_run"] = int(previous["id"])
    for key in ("sessions_staged", "slots_staged"):
        if key in counts:
            entry.counts[key] = counts[key]
    return True
