"""Load one LHEO snapshot of a source into the KAIROS model: read → validate → map → load.

Guarantees (issue 3; docs/data-model.md):

* **One transaction per snapshot.** Staging, upserts, closings, history and the final
  ledger counts commit together; after any failure (a truncated file raising DocumentError
  mid-read, a refused snapshot, a bug) nothing of the snapshot is visible, and the ledger
  row — written before, in its own transaction — is marked `failed` with the error.
* **Bulk and set-based.** Rows are streamed from the reader, mapped, and written in batches
  to temporary staging tables: PostgreSQL `COPY … FROM STDIN` (psycopg2 `copy_expert`),
  SQLite `executemany`. Then a handful of set-based statements (sql/load/*.sql, shared by
  both dialects) upsert, close and version. No ORM, no row-by-row round trips, and memory
  holds one batch, not the file.
* **Idempotent.** Every row carries a content hash; unchanged rows are not rewritten, so
  loading the same snapshot twice writes nothing but a ledger row with status `noop`. When
  the file's bytes, the source's configuration and this code equal those of the source's
  last successful load, that noop is recorded without reading the file (the fast path).
* **Parallel on large files.** Worker processes validate, extract and map their share of
  the formations (pipelines/load_parallel.py); this process writes the same staging rows,
  in document order, in its one transaction (docs/performance.md).
* **Closing with a guard.** Open sessions of the source absent from a full snapshot are
  closed (never deleted), unless that would close more than `max_close_share` of them
  (default 20 %): then the snapshot is refused as suspect and nothing changes.
* **No interleaving.** Runs of one source are serialised by a PostgreSQL advisory lock or,
  on SQLite, a file lock next to the database; the second waits a bounded time, then fails.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, text

from pipelines.config import SourceConfig, SourcesConfig, resolve_config
from pipelines.db import get_engine, read_sql
from pipelines.history import (
    RunLock,
    RunLockTimeout,
    db_timestamp,
    fail_run,
    finish_run,
    mark_interrupted_runs,
    record_versions,
    run_lock,
    start_run,
    utcnow,
)
from pipelines.load_parallel import Block, copy_text, new_buffers, run_parallel, stage_record
from transforms.formation_digest import DigestSet, UnchangedFormation
from transforms.kairos_mapping import (
    ActionRow,
    FormationRow,
    OrganisationRow,
    SessionRow,
    SlotRow,
)
from transforms.reader import OfferReader
from transforms.records import Formation, QuarantinedRecord

RUN_KIND = "lheo"
DEFAULT_BATCH_SIZE = 20_000  # session rows per staging flush: bounded memory, few round trips
LOCK_POLL_SECONDS = 0.2

# Column lists, defined once by the mapping's row types.
ORGANISATION_COLUMNS: tuple[str, ...] = OrganisationRow._fields
FORMATION_COLUMNS: tuple[str, ...] = FormationRow._fields
ACTION_COLUMNS: tuple[str, ...] = ActionRow._fields
SESSION_COLUMNS: tuple[str, ...] = SessionRow._fields
# SlotRow starts with its session's natural key (source, numero, dispensateur), then the
# recruitment_slot columns.
SLOT_KEY_COLUMNS = ("source", "carif_session_numero", "dispensateur_siret")
SLOT_COLUMNS: tuple[str, ...] = SlotRow._fields[len(SLOT_KEY_COLUMNS) :]
SLOT_TARGET_COLUMNS: tuple[str, ...] = ("kairos_session_id", "origin", *SLOT_COLUMNS)
STAGED_SLOT_COLUMNS: tuple[str, ...] = (
    "seq",
    "session_seq",
    *SLOT_KEY_COLUMNS,
    "origin",
    *SLOT_COLUMNS,
)


class LoadError(Exception):
    """A load that did not happen; `run_id` is its ledger row when one was written."""

    def __init__(self, message: str, run_id: int | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id


class SnapshotRefused(LoadError):
    """The snapshot looks wrong as a whole (mass closing, unexpected LHEO version)."""


class LockTimeout(LoadError):
    """Another run of the same source held the lock longer than the bounded wait."""


@dataclass(slots=True)
class LedgerEntry:
    """The ledger row of one load, as returned to callers and printed by the CLI."""

    run_id: int
    source: str
    status: str
    snapshot_file: str
    snapshot_sha256: str
    lheo_version: str | None = None
    formations_read: int = 0
    formations_valid: int = 0
    formations_quarantined: int = 0
    sessions_inserted: int = 0
    sessions_updated: int = 0
    sessions_unchanged: int = 0
    sessions_closed: int = 0
    slots_inserted: int = 0
    slots_updated: int = 0
    slots_closed: int = 0
    counts: dict[str, Any] = field(default_factory=dict)

    def ledger_counts(self) -> dict[str, int | None]:
        return {
            "formations_read": self.formations_read,
            "formations_valid": self.formations_valid,
            "formations_quarantined": self.formations_quarantined,
            "sessions_inserted": self.sessions_inserted,
            "sessions_updated": self.sessions_updated,
            "sessions_unchanged": self.sessions_unchanged,
            "sessions_closed": self.sessions_closed,
            "slots_inserted": self.slots_inserted,
            "slots_updated": self.slots_updated,
            "slots_closed": self.slots_closed,
        }


@dataclass(frozen=True, slots=True)
class _Entity:
    """How one target table is matched with its staging table (sql/load templates)."""

    table: str
    staging: str
    columns: tuple[str, ...]
    scope: str  # which target rows this source's snapshot owns
    match: str  # target row ↔ staged row `s`
    # the target row belongs to a formation skipped as unchanged (never closed by the load)
    kept: str = (
        "SELECT 1 FROM stg_kept_formation AS k"
        " WHERE k.carif_formation_numero = {t}.carif_formation_numero"
    )


_SESSION_SCOPE = "{t}.source = :source"
ENTITIES: dict[str, _Entity] = {
    "formation": _Entity(
        "formation",
        "stg_formation",
        FORMATION_COLUMNS,
        _SESSION_SCOPE,
        "{t}.carif_formation_numero = s.carif_formation_numero",
    ),
    "action": _Entity(
        "action",
        "stg_action",
        ACTION_COLUMNS,
        _SESSION_SCOPE,
        "{t}.carif_action_numero = s.carif_action_numero",
    ),
    "kairos_session": _Entity(
        "kairos_session",
        "stg_session",
        SESSION_COLUMNS,
        _SESSION_SCOPE,
        "{t}.carif_session_numero = s.carif_session_numero"
        " AND {t}.dispensateur_siret = s.dispensateur_siret",
    ),
    # The LHEO loader owns origin='lheo' slots only; origin='kairos' ones belong to the
    # KAIROS exports ingestion and are never touched here.
    "recruitment_slot": _Entity(
        "recruitment_slot",
        "stg_slot",
        SLOT_TARGET_COLUMNS,
        "{t}.origin = 'lheo' AND {t}.kairos_session_id IN"
        " (SELECT id FROM kairos_session WHERE source = :source)",
        "{t}.kairos_session_id = s.kairos_session_id AND {t}.slot_key = s.slot_key",
        "SELECT 1 FROM stg_kept_session AS k WHERE k.id = {t}.kairos_session_id",
    ),
}


# When no formation was skipped, the closing needs no "kept" test at all: a constant-false
# subquery, which the planners drop (a real one, estimated from nothing, once turned the
# 1 M-slot closing into a nested loop over the staged slots).
NOTHING_KEPT = "SELECT 1 WHERE 1 = 0"


def _statement(name: str, entity: _Entity, *, kept: bool = False) -> str:
    t = entity.table
    assignments = ", ".join(f"{c} = s.{c}" for c in entity.columns)
    return read_sql(f"load/{name}.sql").format(
        table=t,
        staging=entity.staging,
        columns=", ".join(entity.columns),
        staged_columns=", ".join(f"s.{c}" for c in entity.columns),
        assignments=assignments,
        scope=entity.scope.format(t=t),
        match=entity.match.format(t=t),
        kept=entity.kept.format(t=t) if kept else NOTHING_KEPT,
    )


def _statements(script: str) -> list[tuple[str | None, str]]:
    """Split a SQL file into (name, statement); `-- name: x` comments name the next one."""
    result: list[tuple[str | None, str]] = []
    name: str | None = None
    buffer: list[str] = []
    for line in script.splitlines():
        stripped = line.strip()
        if stripped.startswith("-- name:"):
            name = stripped.removeprefix("-- name:").strip()
            continue
        if stripped.startswith("--") or not stripped:
            continue
        buffer.append(line)
        if stripped.endswith(";"):
            result.append((name, "\n".join(buffer).rstrip().rstrip(";")))
            name, buffer = None, []
    if buffer:
        result.append((name, "\n".join(buffer)))
    return result


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------- locking


@contextmanager
def source_lock(engine: Engine, source: str, timeout: float) -> Iterator[RunLock]:
    """Hold the per-source run lock (pipelines.history.run_lock: a PostgreSQL session
    advisory lock, a file lock beside a SQLite database), waiting at most `timeout` seconds.
    Yields the RunLock: the load checks it is still held before it commits."""
    try:
        with run_lock(engine, run_kind=RUN_KIND, source=source, timeout=timeout) as lock:
            yield lock
    except RunLockTimeout:
        raise LockTimeout(
            f"another load of source {source!r} is running; waited {timeout:g} s for it to"
            " finish (see run_ledger for the running row)"
        ) from None


# --------------------------------------------------------------------------- staging


def _copy_text(rows: Sequence[Sequence[object]]) -> io.StringIO:
    """Rows in COPY text format (tab-separated, \\N for NULL, backslash escapes)."""
    return copy_text(rows)


class _Stager:
    """Buffers mapped rows and flushes them to the staging tables in batches."""

    def __init__(self, conn: Connection, batch_size: int) -> None:
        self.conn = conn
        self.batch_size = batch_size
        self.postgres = conn.dialect.name == "postgresql"
        self.seq = 0
        self.buffers: dict[str, list[tuple[object, ...]]] = new_buffers()
        # Blocks already rendered as COPY text by the parallel workers (PostgreSQL).
        self.texts: dict[str, list[str]] = {table: [] for table in self.buffers}
        self.pending = 0
        self.columns: dict[str, tuple[str, ...]] = {
            "stg_organisation": ("seq", *ORGANISATION_COLUMNS),
            "stg_formation": ("seq", *FORMATION_COLUMNS),
            "stg_action": ("seq", *ACTION_COLUMNS),
            "stg_session": ("seq", *SESSION_COLUMNS),
            "stg_slot": STAGED_SLOT_COLUMNS,
            "stg_formation_seen": (
                "carif_formation_numero",
                "digest",
                "state",
                "seq",
                "organisations",
                "reason",
            ),
        }
        self.staged = dict.fromkeys(self.buffers, 0)

    def add(
        self,
        record: Formation | UnchangedFormation | QuarantinedRecord,
        config: SourceConfig,
        digest: int | None,
    ) -> None:
        buffers = self.buffers
        self.seq = stage_record(buffers, record, digest, config, self.seq)
        if len(buffers["stg_session"]) + len(buffers["stg_slot"]) >= self.batch_size:
            self.flush()

    def add_block(self, block: Block) -> None:
        """A block mapped by a parallel worker (rows numbered by the worker)."""
        for table, payload in block.payload.items():
            if isinstance(payload, str):
                self.texts[table].append(payload)
                self.staged[table] += block.rows[table]
            else:
                self.buffers[table].extend(payload)
            self.pending += block.rows[table]
        if self.pending >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        self.pending = 0
        for table, texts in self.texts.items():
            if not texts:
                continue
            cursor = self.conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.copy_expert(
                    f"COPY {table} ({', '.join(self.columns[table])}) FROM STDIN",
                    io.StringIO("".join(texts)),
                    size=1 << 20,
                )
            finally:
                cursor.close()
            texts.clear()
        for table, rows in self.buffers.items():
            if not rows:
                continue
            columns = self.columns[table]
            if self.postgres:
                cursor = self.conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                try:
                    cursor.copy_expert(
                        f"COPY {table} ({', '.join(columns)}) FROM STDIN", _copy_text(rows)
                    )
                finally:
                    cursor.close()
            else:
                marks = ", ".join("?" for _ in columns)
                self.conn.exec_driver_sql(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows
                )
            self.staged[table] += len(rows)
            rows.clear()


def restage_organisations(conn: Connection, stager: _Stager, source: str) -> int:
    """Stage the organisation rows of the formations skipped as unchanged, from what their
    last reading recorded, at their place in document order: the organisation choice
    (dedupe_staging.sql) then sees every formation of the snapshot, as a full read does."""
    staged = 0
    rows = conn.execute(
        text(read_sql("load/unchanged_organisations.sql")), {"source": source}
    ).all()
    buffer = stager.buffers["stg_organisation"]
    for seq, organisations in rows:
        for organisation in json.loads(organisations or "[]"):
            buffer.append((seq, *organisation))
            staged += 1
        if len(buffer) >= stager.batch_size:
            stager.flush()
    stager.flush()
    return staged


def _qualified(table: str, columns: Sequence[str]) -> str:
    return ", ".join(f"{table}.{c}" for c in columns)


def _create_staging(conn: Connection) -> None:
    temp = "pg_temp" if conn.dialect.name == "postgresql" else "temp"
    script = read_sql("load/create_staging.sql").format(
        temp=temp,
        organisation_columns=", ".join(ORGANISATION_COLUMNS),
        formation_columns=", ".join(FORMATION_COLUMNS),
        action_columns=", ".join(ACTION_COLUMNS),
        session_columns=", ".join(SESSION_COLUMNS),
        slot_columns=_qualified("recruitment_slot", SLOT_TARGET_COLUMNS),
    )
    for _, statement in _statements(script):
        conn.exec_driver_sql(statement)


def _drop_staging(conn: Connection) -> None:
    temp = "pg_temp" if conn.dialect.name == "postgresql" else "temp"
    for table in (
        "stg_kept_session",
        "stg_kept_formation",
        "stg_rejected_formation",
        "stg_formation_last",
        "stg_formation_seen",
        "stg_slot",
        "stg_session",
        "stg_action",
        "stg_formation",
        "stg_organisation",
    ):
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {temp}.{table}")


# --------------------------------------------------------------------------- set-based steps


def _run_named(
    conn: Connection,
    path: str,
    params: dict[str, Any],
    skip: Callable[[str, dict[str, int]], bool] | None = None,
) -> dict[str, int]:
    """Run the statements of a SQL file; counts of the named ones. `skip(name, counts so
    far)` leaves a named statement out (its count is then 0)."""
    counts: dict[str, int] = {}
    for name, statement in _statements(read_sql(path)):
        if name and skip is not None and skip(name, counts):
            counts[name] = 0
            continue
        result = conn.execute(text(statement), params)
        if name:
            counts[name] = int(result.rowcount or 0)
    return counts


def _needless_dedupe(name: str, counts: dict[str, int]) -> bool:
    """A slot can only lose its session when a session occurrence was dropped."""
    return (
        name == "orphan_slots"
        and counts.get("duplicate_sessions") == 0
        and counts.get("superseded_sessions") == 0
    )


@contextmanager
def _timed(entry: LedgerEntry, step: str) -> Iterator[None]:
    """Add the seconds a step of the set-based part takes to the ledger's counts
    (`seconds_by_step`): where a load's SQL time went can be read after the fact."""
    started = time.perf_counter()
    try:
        yield
    finally:
        steps = entry.counts.setdefault("seconds_by_step", {})
        steps[step] = round(steps.get(step, 0.0) + time.perf_counter() - started, 3)


def check_close_share(
    conn: Connection, source: str, max_share: float, run_id: int
) -> tuple[int, int]:
    """(open sessions, sessions this snapshot would close); raises SnapshotRefused."""
    row = conn.execute(text(read_sql("load/close_guard.sql")), {"source": source}).one()
    open_sessions, vanishing = int(row.open_sessions), int(row.vanishing)
    if open_sessions and vanishing > max_share * open_sessions:
        raise SnapshotRefused(
            f"snapshot refused as suspect: it would close {vanishing} of the {open_sessions} "
            f"open sessions of source {source!r} ({vanishing / open_sessions:.0%}), more than "
            f"max_close_share {max_share:.0%}; nothing was changed. If this is intended, raise "
            f"max_close_share for the source in the config and load again.",
            run_id,
        )
    return open_sessions, vanishing


LOAD_WORK_MEM = "256MB"


def _bulk_settings(conn: Connection) -> None:
    """PostgreSQL memory for this transaction's sorts, hashes and index builds. The server
    default (4 MB) makes every million-row sort, window and hash join of the set-based steps
    spill to temporary files; the load is one session, so a larger budget for it alone is
    safe (KAIROS_LOAD_WORK_MEM; SET LOCAL, so it ends with the transaction)."""
    if conn.dialect.name != "postgresql":
        return
    budget = os.environ.get("KAIROS_LOAD_WORK_MEM", LOAD_WORK_MEM)
    for setting in ("work_mem", "maintenance_work_mem"):
        conn.execute(
            text("SELECT set_config(:name, :value, true)"), {"name": setting, "value": budget}
        )


@contextmanager
def _hash_joins_only(conn: Connection) -> Iterator[None]:
    """PostgreSQL: no nested loops for one statement. The closings anti-join every open row
    of the source with the staged rows and the kept ones; both sides are large, so hash
    joins are always right, and a row estimate of 1 (a planner guess on a temporary table)
    once made a nested loop run for minutes at 1 M slots."""
    if conn.dialect.name != "postgresql":
        yield
        return
    conn.exec_driver_sql("SET LOCAL enable_nestloop = off")
    yield  # on an error the transaction rolls back, and the setting with it
    conn.exec_driver_sql("SET LOCAL enable_nestloop = on")


def upsert_entity(
    conn: Connection, name: str, params: dict[str, Any], *, close: bool, kept: bool = False
) -> tuple[int, int, int]:
    """(updated, inserted, closed) rows of one entity, set-based."""
    entity = ENTITIES[name]
    updated = conn.execute(text(_statement("update_changed", entity)), params).rowcount
    inserted = conn.execute(text(_statement("insert_new", entity)), params).rowcount
    if inserted:
        _analyze(
            conn, STATS.get(entity.table, entity.table)
        )  # the closing's anti-join must see the new rows
    closed = 0
    if close:
        statement = _statement("close_vanished", entity, kept=kept)
        with _hash_joins_only(conn):
            closed = conn.execute(text(statement), params).rowcount
    return int(updated or 0), int(inserted or 0), int(closed or 0)


def _quarantine(
    conn: Connection, records: list[QuarantinedRecord], run_id: int, source: str, now: object
) -> None:
    if not records:
        return
    conn.execute(
        text(read_sql("load/insert_quarantine.sql")),
        [
            {
                "run_id": run_id,
                "source": source,
                "file": record.file,
                "record_kind": record.kind,
                "record_key": record.numero,
                "line": record.line,
                "path": record.path,
                # Locations and schema messages only: raw_xml may hold contact names.
                "reasons": json.dumps(
                    [
                        {"line": r.line, "path": r.path, "message": r.message}
                        for r in record.reasons
                    ],
                    ensure_ascii=False,
                ),
                "created_at": now,
            }
            for record in records
        ],
    )
    records.clear()


# --------------------------------------------------------------------------- fast paths

PARALLEL_MIN_BYTES = 8_000_000  # below this, starting worker processes costs more than it saves
# What decides the rows a file gives: the code of the reader, extraction, mapping and load
# (every module of transforms/ but the offer generator), the schemas and sql/load.
_CODE_FILES = (
    "pipelines/load.py",
    "pipelines/load_parallel.py",
    "pipelines/history.py",
)
_NOT_LOADER_CODE = frozenset({"generator.py"})


def _worker_count(file: Path, workers: int | None) -> int:
    if workers is None:
        configured = os.environ.get("KAIROS_LOAD_WORKERS")
        if configured:
            workers = int(configured)
        else:
            cores = os.cpu_count() or 1
            big = file.exists() and file.stat().st_size >= PARALLEL_MIN_BYTES
            workers = min(cores, 4) if cores > 1 and big else 0
    return workers if workers > 1 else 0


@lru_cache(maxsize=1)
def _code_digest() -> str:
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    paths = [root / name for name in _CODE_FILES]
    paths += sorted(p for p in (root / "transforms").glob("*.py") if p.name not in _NOT_LOADER_CODE)
    paths += sorted((root / "sql" / "load").glob("*.sql"))
    paths += sorted((root / "lheo_schemas").glob("*.xsd"))
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()


def digest_basis(config: SourceConfig) -> str:
    """What makes a formation's rows a function of its bytes: the source's configuration
    and the loader's code (transforms/formation_digest.py)."""
    basis = json.dumps([repr(config), _code_digest()], ensure_ascii=False, default=str)
    return hashlib.sha256(basis.encode()).hexdigest()


def input_fingerprint(sha256: str, config: SourceConfig, full_snapshot: bool) -> str:
    """What a load's result depends on besides the database: the file's bytes (not its name),
    the source's configuration, full or partial snapshot, and the loader's code."""
    basis = json.dumps(
        [sha256, repr(config), full_snapshot, _code_digest()], ensure_ascii=False, default=str
    )
    return hashlib.sha256(basis.encode()).hexdigest()


def _unchanged_input(
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


# --------------------------------------------------------------------------- the load


def load_snapshot(
    path: str | os.PathLike[str],
    *,
    source: str,
    config: SourcesConfig | str | os.PathLike[str] | None = None,
    db_url: str | None = None,
    full_snapshot: bool = True,
    lock_timeout: float | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    fast_path: bool = True,
) -> LedgerEntry:
    """Load the LHEO file at `path` as the current snapshot of `source`.

    `workers`: processes that validate, extract and map in parallel (None: one per core on
    files of PARALLEL_MIN_BYTES or more, else 0 = in this process; env KAIROS_LOAD_WORKERS
    overrides the default). `fast_path`: when the file, the source's configuration and the
    loader's code are those of the source's last successful load, record a `noop` without
    reading the file (docs/performance.md).

    Raises transforms.reader.DocumentError (whole document refused), SnapshotRefused
    (mass closing, unexpected LHEO version), LockTimeout (another run of the source), or
    the underlying error; in every case the database is as before and, when a ledger row
    was written, it says `failed` with the message.
    """
    file = Path(path)
    source_config = resolve_config(
        config if isinstance(config, SourcesConfig) or config is None else Path(config)
    ).source(source)
    engine = get_engine(db_url)
    try:
        sha = file_sha256(file)
        timeout = source_config.lock_timeout_seconds if lock_timeout is None else lock_timeout
        try:
            with source_lock(engine, source, timeout) as lock:
                run_id = start_run(
                    engine,
                    run_kind=RUN_KIND,
                    source=source,
                    snapshot_file=str(file),
                    snapshot_sha256=sha,
                )
                # We hold the lock: another 'running' row of the source is a killed run's.
                mark_interrupted_runs(
                    engine, run_kind=RUN_KIND, source=source, current_run_id=run_id
                )
                entry = LedgerEntry(run_id, source, "running", str(file), sha)
                try:
                    _load(
                        engine,
                        file,
                        source_config,
                        entry,
                        full_snapshot,
                        batch_size,
                        _worker_count(file, workers),
                        fast_path,
                        lock,
                    )
                except BaseException as exc:
                    entry.status = "failed"
                    fail_run(
                        engine,
                        run_id,
                        f"{type(exc).__name__}: {exc}",
                        lheo_version=entry.lheo_version,
                        counts=entry.ledger_counts(),
                    )
                    if isinstance(exc, LoadError):
                        exc.run_id = run_id
                    raise
                return entry
        except LockTimeout:
            _record_lock_failure(engine, source, file, sha, timeout)
            raise
    finally:
        engine.dispose()


def _record_lock_failure(engine: Engine, source: str, file: Path, sha: str, timeout: float) -> None:
    """Best effort: the refused run is visible in the ledger. On SQLite the database may be
    busy with the very run we waited for; then the CLI message is the record."""
    try:
        run_id = start_run(
            engine, run_kind=RUN_KIND, source=source, snapshot_file=str(file), snapshot_sha256=sha
        )
        fail_run(
            engine, run_id, f"LockTimeout: another load of {source!r} held the lock {timeout:g} s"
        )
    except Exception:  # noqa: S110 - the LockTimeout raised by the caller is what matters
        pass


def _load(
    engine: Engine,
    file: Path,
    config: SourceConfig,
    entry: LedgerEntry,
    full_snapshot: bool,
    batch_size: int,
    workers: int = 0,
    fast_path: bool = False,
    lock: RunLock | None = None,
) -> None:
    started = time.perf_counter()
    fingerprint = input_fingerprint(entry.snapshot_sha256, config, full_snapshot)
    entry.counts["input_fingerprint"] = fingerprint
    with engine.connect() as conn:
        try:
            if conn.dialect.name == "sqlite":
                # Take SQLite's write lock now: a deferred transaction that reads first could
                # not upgrade to writing if another connection committed in between.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            now = utcnow()
            if not (fast_path and _unchanged_input(conn, file, config, entry, fingerprint, now)):
                _load_in_transaction(
                    conn,
                    file,
                    config,
                    entry,
                    full_snapshot,
                    batch_size,
                    now,
                    workers,
                    skip_unchanged=fast_path,
                )
            entry.counts["seconds"] = round(time.perf_counter() - started, 3)
            finish_run(
                conn,
                entry.run_id,
                status=entry.status,
                counts=entry.ledger_counts(),
                extra_counts=entry.counts,
                lheo_version=entry.lheo_version,
            )
            if lock is not None:
                # A lock whose session died was released by the server: another load of
                # the source may be running; this one must not commit (RunLockLost).
                lock.assert_held()
            conn.commit()
        except BaseException:
            conn.rollback()
            raise


def _load_in_transaction(
    conn: Connection,
    file: Path,
    config: SourceConfig,
    entry: LedgerEntry,
    full_snapshot: bool,
    batch_size: int,
    now: datetime,
    workers: int = 0,
    *,
    skip_unchanged: bool = True,
) -> None:
    source = config.name
    stamp = db_timestamp(conn, now)
    started = time.perf_counter()
    _bulk_settings(conn)
    basis = digest_basis(config)
    stored_basis = conn.execute(
        text("SELECT basis FROM formation_digest_basis WHERE source = :source"),
        {"source": source},
    ).scalar_one_or_none()
    known = DigestSet()
    if skip_unchanged and stored_basis == basis:
        known = DigestSet(
            conn.execute(
                text("SELECT digest FROM formation_digest WHERE source = :source"),
                {"source": source},
            ).scalars()
        )
    entry.counts["formations_known"] = len(known)
    _create_staging(conn)
    stager = _Stager(conn, batch_size)
    quarantined: list[QuarantinedRecord] = []
    with OfferReader(file, source=source, digests=known) as reader:
        entry.lheo_version = reader.lheo_version
        if config.lheo_version and config.lheo_version != reader.lheo_version:
            raise SnapshotRefused(
                f"{file}: LHEO {reader.lheo_version} document, but source {source!r} is "
                f"configured as LHEO {config.lheo_version}"
            )
        if workers > 1:
            # Validate, extract and map in worker processes (pipelines/load_parallel.py);
            # this process only writes the staged blocks, in document order.
            def write(block: Block) -> None:
                quarantined.extend(block.quarantined)
                if len(quarantined) >= 1000:
                    _quarantine(conn, quarantined, entry.run_id, source, stamp)
                stager.add_block(block)

            counts = run_parallel(
                file,
                source,
                config,
                workers=workers,
                copy_format=stager.postgres,
                write=write,
                digests=known,
            )
            read, valid, rejected = counts.formations, counts.valid, counts.quarantined
            unchanged = counts.unchanged
            entry.counts["formations_misplaced"] = counts.misplaced
            entry.counts["elements_quarantined"] = counts.elements
            entry.counts["load_workers"] = workers
        else:
            for record in reader:
                if isinstance(record, QuarantinedRecord):
                    quarantined.append(record)
                    if len(quarantined) >= 1000:
                        _quarantine(conn, quarantined, entry.run_id, source, stamp)
                stager.add(record, config, reader.last_digest)
            counted = reader.counts
            read, valid, rejected = counted["formations"], counted["valid"], counted["quarantined"]
            unchanged = counted["unchanged"]
            entry.counts["formations_misplaced"] = counted["misplaced"]
            entry.counts["elements_quarantined"] = counted["elements"]
        stager.flush()
        if unchanged:
            entry.counts["organisations_of_unchanged_formations"] = restage_organisations(
                conn, stager, source
            )
        _quarantine(conn, quarantined, entry.run_id, source, stamp)
        entry.formations_read = read
        entry.formations_valid = valid
        entry.formations_quarantined = rejected
        entry.counts["formations_unchanged"] = unchanged

    entry.counts["seconds_read_map_stage"] = round(time.perf_counter() - started, 3)
    params: dict[str, Any] = {
        "source": source,
        "run_id": entry.run_id,
        "now": stamp,
        "today": now.date().isoformat(),  # ISO text: a DATE on PostgreSQL, as SQLite stores it
    }
    started = time.perf_counter()
    with _timed(entry, "index_dedupe_staging"):
        for _, statement in _statements(read_sql("load/index_staging.sql")):
            conn.exec_driver_sql(statement)
        _analyze(
            conn,
            "stg_session (seq, carif_session_numero, dispensateur_siret)",
            "stg_slot (seq, session_seq, carif_session_numero, dispensateur_siret, slot_key)",
            "stg_formation (carif_formation_numero)",
            "stg_action (carif_action_numero)",
            "stg_organisation (siret)",
        )
        entry.counts.update(
            _run_named(conn, "load/dedupe_staging.sql", params, skip=_needless_dedupe)
        )
        entry.counts["duplicate_formations"] = int(
            conn.execute(text(read_sql("load/count_duplicate_formations.sql"))).scalar_one()
        )
    with _timed(entry, "kept_rows_close_guard"):
        for _, statement in _statements(read_sql("load/kept_rows.sql")):
            conn.execute(text(statement), params)
        _analyze(conn, "stg_kept_formation", "stg_kept_session", "stg_rejected_formation")
        if full_snapshot:
            check_close_share(conn, source, config.max_close_share, entry.run_id)
    apply_staged(conn, entry, params, full_snapshot=full_snapshot, now=now)
    with _timed(entry, "digests"):
        replace_all = int(full_snapshot or stored_basis != basis)
        digest_counts = _run_named(
            conn,
            "load/record_digests.sql",
            {**params, "basis": basis, "replace_all": replace_all},
        )
        entry.counts["formation_digests_recorded"] = digest_counts.get("recorded", 0)
        _drop_staging(conn)
    entry.counts["seconds_apply"] = round(time.perf_counter() - started, 3)


# Only the columns the set-based statements join and filter on: ANALYZE of the wide text
# columns costs more than it helps.
SESSION_STATS = (
    "kairos_session (id, source, carif_session_numero, dispensateur_siret, content_hash,"
    " first_seen_run_id, last_seen_run_id, closed_at, closed_run_id)"
)
SLOT_STATS = (
    "recruitment_slot (id, kairos_session_id, origin, slot_key, content_hash,"
    " first_seen_run_id, last_seen_run_id, closed_at, closed_run_id)"
)
STATS = {"kairos_session": SESSION_STATS, "recruitment_slot": SLOT_STATS}


def _analyze(conn: Connection, *tables: str) -> None:
    """Fresh PostgreSQL statistics for tables this transaction just filled: autovacuum has
    not seen them yet, and with stale counts (an empty table "has" 0 rows) the planner picks
    nested loops that turn a 1 M-row upsert quadratic. Sampled, so cheap at any size.
    SQLite plans from its indexes without statistics, and its ANALYZE reads whole tables."""
    if conn.dialect.name == "postgresql":
        for table in tables:
            conn.exec_driver_sql(f"ANALYZE {table}")


def apply_staged(
    conn: Connection,
    entry: LedgerEntry,
    params: dict[str, Any],
    *,
    full_snapshot: bool,
    now: datetime,
) -> None:
    """The set-based part: staged rows → target tables, closings, history, counts."""
    staged_sessions = conn.execute(text("SELECT COUNT(*) FROM stg_session")).scalar_one()
    staged_slots = conn.execute(text("SELECT COUNT(*) FROM stg_slot")).scalar_one()
    _analyze(conn, SESSION_STATS, SLOT_STATS)
    with _timed(entry, "organisations_formations_actions"):
        organisations = conn.execute(
            text(
                read_sql("load/upsert_organisation.sql").format(
                    columns=", ".join(ORGANISATION_COLUMNS)
                )
            ),
            params,
        ).rowcount
        # Rows to keep open without staging them: formations skipped as unchanged or rejected.
        kept = bool(entry.counts.get("formations_unchanged") or entry.formations_quarantined)
        f_updated, f_inserted, f_closed = upsert_entity(
            conn, "formation", params, close=full_snapshot, kept=kept
        )
        a_updated, a_inserted, a_closed = upsert_entity(
            conn, "action", params, close=full_snapshot, kept=kept
        )
    with _timed(entry, "sessions"):
        updated, inserted, closed = upsert_entity(
            conn, "kairos_session", params, close=full_snapshot, kept=kept
        )
    entry.sessions_updated, entry.sessions_inserted, entry.sessions_closed = (
        updated,
        inserted,
        closed,
    )
    kept_sessions = int(
        conn.execute(text(read_sql("load/count_kept_sessions.sql")), params).scalar_one()
    )
    entry.sessions_unchanged = int(staged_sessions) - inserted - updated + kept_sessions
    entry.counts["sessions_of_unchanged_formations"] = kept_sessions
    with _timed(entry, "rejected_formations"):
        marks = _run_named(conn, "load/mark_rejected_formations.sql", params)
        rejected = conn.execute(text(read_sql("load/count_rejected_sessions.sql")), params).one()
    entry.counts.update(marks)
    entry.counts["sessions_of_rejected_formations"] = int(rejected.sessions)
    entry.counts["rejected_formations_keeping_sessions"] = int(rejected.formations)
    entry.counts["sessions_of_unchanged_formations"] = kept_sessions - int(rejected.sessions)
    if updated + closed + sum(marks.values()):
        _analyze(conn, SESSION_STATS)  # run-id distributions moved: history joins on them
    with _timed(entry, "slots"):
        for _, statement in _statements(read_sql("load/resolve_slot_sessions.sql")):
            conn.execute(text(statement), params)
        if conn.dialect.name == "sqlite":
            for _, statement in _statements(read_sql("load/index_staged_slots_sqlite.sql")):
                conn.exec_driver_sql(statement)
        _analyze(conn, "stg_slot (kairos_session_id, slot_key)")
        s_updated, s_inserted, s_closed = upsert_entity(
            conn, "recruitment_slot", params, close=full_snapshot, kept=kept
        )
        if s_updated + s_closed:
            _analyze(conn, SLOT_STATS)
    entry.slots_updated, entry.slots_inserted, entry.slots_closed = s_updated, s_inserted, s_closed
    with _timed(entry, "versions"):
        versions = record_versions(conn, "kairos_session", run_id=entry.run_id, at=now)
        slot_versions = record_versions(conn, "recruitment_slot", run_id=entry.run_id, at=now)
    entry.counts.update(
        {
            "sessions_staged": int(staged_sessions),
            "slots_staged": int(staged_slots),
            "slots_unchanged": int(staged_slots) - s_inserted - s_updated,
            "organisations_written": int(organisations or 0),
            "formations_inserted": f_inserted,
            "formations_updated": f_updated,
            "formations_closed": f_closed,
            "actions_inserted": a_inserted,
            "actions_updated": a_updated,
            "actions_closed": a_closed,
            "session_versions": versions,
            "slot_versions": slot_versions,
            "full_snapshot": int(full_snapshot),
        }
    )
    changed = (
        inserted
        + sum(marks.values())
        + updated
        + closed
        + s_inserted
        + s_updated
        + s_closed
        + f_inserted
        + f_updated
        + f_closed
        + a_inserted
        + a_updated
        + a_closed
        + int(organisations or 0)
    )
    entry.status = "succeeded" if changed else "noop"
