"""Run ledger and change history, shared by every stage that writes sessions or slots.

The convention (docs/data-model.md, "History"), for `kairos_session` and `recruitment_slot`:

1. A run first gets a ledger id: `start_run(engine, run_kind=…, source=…)` (own transaction,
   so a failed run stays visible).
2. Within its load transaction it writes rows set-based, and marks every row it *writes*:
   insert → `first_seen_run_id = last_seen_run_id = run`; change or reopen →
   `last_seen_run_id = run, closed_at = NULL, closed_run_id = NULL`; close →
   `closed_at = now, closed_run_id = run`. Unchanged rows (same `content_hash`) are left alone.
3. Still in that transaction, `record_versions(conn, "recruitment_slot", run_id=…, at=…)` ends
   the current version of every marked row and opens a new one (insert/update/close/reopen)
   holding the content hash. The current version's content is the row itself (its
   `snapshot` is NULL); a trigger (migration 0007) copies the row into its current version
   just before an UPDATE changes it, so every ended version keeps a JSON snapshot and a
   first load writes each row once.
4. `finish_run(conn, run_id, status=…, counts=…)` in the same transaction on success;
   `fail_run(engine, run_id, error)` in a new transaction after a rollback.

Then sql/queries/sessions_changed_in_last_run.sql and sql/queries/sessions_as_of.sql (and
slots_as_of.sql) answer "what changed in the last run" and "the state as of D".
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import filelock
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from core.db import execute_trigger_script, read_sql

log = logging.getLogger(__name__)

VersionedTable = Literal["kairos_session", "recruitment_slot"]

# Each versioned table: (its version table, the version table's key to it).
VERSIONING: dict[VersionedTable, tuple[str, str]] = {
    "kairos_session": ("kairos_session_version", "kairos_session_id"),
    "recruitment_slot": ("recruitment_slot_version", "recruitment_slot_id"),
}
# Bookkeeping columns: the version row carries them itself, they are not the row's content.
_NOT_IN_SNAPSHOT = frozenset({"id", "first_seen_run_id", "last_seen_run_id", "closed_run_id"})
# PostgreSQL functions take at most 100 arguments: build the JSON object in chunks.
_PAIRS_PER_CHUNK = 40

RUN_COUNT_COLUMNS = (
    "formations_read",
    "formations_valid",
    "formations_quarantined",
    "sessions_inserted",
    "sessions_updated",
    "sessions_unchanged",
    "sessions_closed",
    "slots_inserted",
    "slots_updated",
    "slots_closed",
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def db_timestamp(conn: Connection, moment: datetime) -> datetime | str:
    """Timestamps bound to SQL. SQLite has no timestamp type: ISO text in UTC with a fixed
    format, so that text comparisons (as-of queries) order correctly."""
    if conn.dialect.name == "sqlite":
        return moment.astimezone(UTC).isoformat(sep=" ", timespec="microseconds")
    return moment


def start_run(
    engine: Engine,
    *,
    run_kind: str,
    source: str | None,
    snapshot_file: str | None = None,
    snapshot_sha256: str | None = None,
    lheo_version: str | None = None,
) -> int:
    """Insert a `running` ledger row in its own transaction and return its id."""
    with engine.begin() as conn:
        row = conn.execute(
            text(
                "INSERT INTO run_ledger (run_kind, source, snapshot_file, snapshot_sha256, "
                "lheo_version, started_at, status) VALUES (:kind, :source, :file, :sha, "
                ":version, :now, 'running') RETURNING id"
            ),
            {
                "kind": run_kind,
                "source": source,
                "file": snapshot_file,
                "sha": snapshot_sha256,
                "version": lheo_version,
                "now": db_timestamp(conn, utcnow()),
            },
        ).one()
    return int(row[0])


INTERRUPTED = "interrupted"
_LOCK_POLL_SECONDS = 0.2


class RunLockTimeout(Exception):
    """Another run of the same kind and source held the run lock past the bounded wait."""


class RunLockLost(RuntimeError):
    """The connection holding a run's lock died during the run (terminated, server
    restarted, network cut). The server released the lock with that session, so another
    run of the same kind and source may have started meanwhile: the run must not record a
    success."""


class RunLock:
    """A run lock being held (what `run_lock` yields). Call `assert_held()` inside the
    transaction that records the run's success, just before it commits."""

    def __init__(self, what: str, conn: Connection | None = None) -> None:
        self.what = what
        self._conn = conn  # PostgreSQL: the connection whose session holds the lock

    def assert_held(self) -> None:
        """Raise RunLockLost if the lock's session is gone. SQLite: the file lock lives as
        long as the process, so it is held as long as anyone can ask."""
        if self._conn is None:
            return
        try:
            held = self._conn.execute(
                text(
                    "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND pid = pg_backend_pid()"
                )
            ).scalar_one()
        except DBAPIError as exc:
            raise RunLockLost(
                f"the connection holding the {self.what} run lock was lost during the run "
                f"({_first_line(exc)}); the server released the lock with it, so another "
                "run may have started: this run is not recorded as succeeded"
            ) from exc
        if not held:
            raise RunLockLost(f"the {self.what} run lock is no longer held")


def _first_line(exc: SQLAlchemyError) -> str:
    """The driver's first line (libpq's "terminating connection …"): no bound values."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _release_advisory_lock(conn: Connection, key: int, what: str) -> None:
    """Unlock, never failing the run over it: if the lock's connection died, its session
    ended and the server released the lock with it (nothing is left to release); any
    other failure closes the connection, which ends the session and releases the lock the
    same way. Raising here would replace the run's own outcome (or error) with this one."""
    if not conn.invalidated:  # invalidated: found dead during the run (assert_held)
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            return
        except SQLAlchemyError as exc:
            if not conn.invalidated:  # not a disconnect: the session may still hold it
                log.warning(
                    "the %s run lock could not be released (%s): closing its "
                    "connection releases it",
                    what,
                    _first_line(exc),
                )
                conn.invalidate()
                return
    log.info(
        "the %s run lock's connection was already gone: the server released the lock "
        "with its session",
        what,
    )


@contextmanager
def run_lock(engine: Engine, *, run_kind: str, source: str, timeout: float) -> Iterator[RunLock]:
    """Serialise the runs of (`run_kind`, `source`) — every stage, the LHEO loader through
    pipelines.load.source_lock: a PostgreSQL
    session advisory lock on a dedicated autocommit connection, or on SQLite a file lock
    next to the database. Both die with the process, so a killed run never blocks the next.
    Yields a RunLock: a run checks it is still held before recording its success.
    """
    what = f"{run_kind} {source!r}"
    message = (
        f"another {run_kind} run of {source!r} is running; waited {timeout:g} s for it"
        " (see run_ledger)"
    )
    if engine.dialect.name == "postgresql":
        digest = hashlib.sha256(f"kairos-sync:{run_kind}:{source}".encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            deadline = time.monotonic() + timeout
            while not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                if time.monotonic() >= deadline:
                    raise RunLockTimeout(message)
                time.sleep(_LOCK_POLL_SECONDS)
            try:
                yield RunLock(what, conn)
            finally:
                _release_advisory_lock(conn, key, what)
        return
    database = engine.url.database
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{run_kind}.{source}")
    folder = (
        Path(tempfile.gettempdir()) / "kairos-sync-memory"
        if not database or database == ":memory:"
        else Path(database)
    )
    lock = filelock.FileLock(f"{folder}.{safe}.run.lock", timeout=timeout)
    try:
        lock.acquire(poll_interval=_LOCK_POLL_SECONDS)
    except filelock.Timeout:
        raise RunLockTimeout(message) from None
    try:
        yield RunLock(what)
    finally:
        lock.release()


def mark_interrupted_runs(
    engine: Engine, *, run_kind: str, source: str | None, current_run_id: int
) -> list[int]:
    """Mark `failed` the other `running` rows of (`run_kind`, `source`); returns their ids.

    Call it only while holding the run lock of that source (`run_lock`): a
    live run holds that lock for its whole duration, so any other `running` row is the
    leftover of a process that could not record its own end (SIGKILL, machine crash, OOM
    killer). Its transaction was rolled back by the database; only the ledger is repaired.
    """
    with engine.begin() as conn:
        ids = [
            int(row[0])
            for row in conn.execute(
                text(
                    "SELECT id FROM run_ledger WHERE run_kind = :kind AND status = 'running' "
                    "AND id <> :current AND "
                    "((:source IS NULL AND source IS NULL) OR source = :source) ORDER BY id"
                ),
                {"kind": run_kind, "source": source, "current": current_run_id},
            )
        ]
        if ids:
            conn.execute(
                text(
                    "UPDATE run_ledger SET status = 'failed', finished_at = :now, "
                    "error = :error WHERE id = :id AND status = 'running'"
                ),
                [
                    {
                        "id": run_id,
                        "now": db_timestamp(conn, utcnow()),
                        "error": f"{INTERRUPTED}: the process ended without recording an "
                        f"outcome (killed or crashed); its changes were rolled back. "
                        f"Found by run {current_run_id}.",
                    }
                    for run_id in ids
                ],
            )
    return ids


def finish_run(
    conn: Connection,
    run_id: int,
    *,
    status: str,
    counts: Mapping[str, int | None],
    extra_counts: Mapping[str, Any] | None = None,
    lheo_version: str | None = None,
    error: str | None = None,
) -> None:
    """Record the outcome on `conn` (call it inside the load transaction on success)."""
    values: dict[str, Any] = {name: counts.get(name) for name in RUN_COUNT_COLUMNS}
    assignments = ", ".join(f"{name} = :{name}" for name in RUN_COUNT_COLUMNS)
    conn.execute(
        text(
            f"UPDATE run_ledger SET status = :status, finished_at = :now, error = :error, "
            f"lheo_version = COALESCE(:version, lheo_version), counts_json = :counts_json, "
            f"{assignments} WHERE id = :run_id"
        ),
        {
            **values,
            "status": status,
            "now": db_timestamp(conn, utcnow()),
            "error": error,
            "version": lheo_version,
            "counts_json": json.dumps(dict(extra_counts or {}), sort_keys=True),
            "run_id": run_id,
        },
    )


def fail_run(
    engine: Engine,
    run_id: int,
    error: str,
    *,
    counts: Mapping[str, int | None] | None = None,
    lheo_version: str | None = None,
) -> None:
    """Mark a run failed in a fresh transaction (the load's own was rolled back).

    The database password is masked in `error`, whatever produced the text (a driver or a
    library that echoes its connection string): the ledger is read by many people."""
    password = engine.url.password
    if password:
        error = error.replace(str(password), "***")
    with engine.begin() as conn:
        finish_run(
            conn,
            run_id,
            status="failed",
            counts=counts or {},
            lheo_version=lheo_version,
            error=error,
        )


@lru_cache(maxsize=8)
def _snapshot_columns(columns: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(c for c in columns if c not in _NOT_IN_SNAPSHOT)


def snapshot_expression(dialect: str, columns: Sequence[str], alias: str = "t") -> str:
    """SQL building the JSON object text of a row `alias` of a versioned table (`columns`:
    the table's columns), per dialect. PostgreSQL: the row as jsonb minus the bookkeeping
    columns (canonical key order, so the text is the same whoever builds it: the snapshot
    trigger or a reader); SQLite: json_object over the columns, in table order."""
    if dialect == "postgresql":
        excluded = ", ".join(f"'{c}'" for c in sorted(_NOT_IN_SNAPSHOT))
        return f"(to_jsonb({alias}) - ARRAY[{excluded}]::text[])::text"
    kept = _snapshot_columns(tuple(columns))
    chunks = [kept[i : i + _PAIRS_PER_CHUNK] for i in range(0, len(kept), _PAIRS_PER_CHUNK)]
    parts = [
        "json_object(" + ", ".join(f"'{c}', {alias}.{c}" for c in chunk) + ")" for chunk in chunks
    ]
    expression = parts[0]
    for part in parts[1:]:
        expression = f"json_patch({expression}, {part})"
    return expression


def table_columns(conn: Connection, table: str) -> tuple[str, ...]:
    """The table's column names, in table order."""
    return tuple(column["name"] for column in inspect(conn).get_columns(table))


def snapshot_trigger_name(table: VersionedTable) -> str:
    return f"trg_{table}_keep_version_snapshot"


def drop_snapshot_triggers(conn: Connection) -> None:
    """Drop the triggers of migration 0007 (and PostgreSQL's trigger functions)."""
    for table in VERSIONING:
        trigger = snapshot_trigger_name(table)
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
            conn.exec_driver_sql(f"DROP FUNCTION IF EXISTS {trigger}_fn()")
        else:
            conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {trigger}")


def install_snapshot_triggers(conn: Connection) -> None:
    """(Re)create the triggers that keep an ending version's content (migration 0007): the
    current version's snapshot is NULL and the row is its content, so before an UPDATE
    changes a row, the trigger copies the old row into its current version. SQLite's trigger
    lists the columns: call this again from any migration that changes a versioned table."""
    dialect = conn.dialect.name
    drop_snapshot_triggers(conn)
    for table, (version_table, fk) in VERSIONING.items():
        trigger = snapshot_trigger_name(table)
        script = read_sql(f"history/snapshot_trigger_{dialect}.sql").format(
            table=table,
            version_table=version_table,
            fk=fk,
            trigger=trigger,
            function=f"{trigger}_fn",
            snapshot=snapshot_expression(
                dialect, table_columns(conn, table), "t" if dialect == "postgresql" else "OLD"
            ),
        )
        execute_trigger_script(conn, script)


def record_versions(conn: Connection, table: VersionedTable, *, run_id: int, at: datetime) -> int:
    """Close the current version and open a new one for every row of `table` that run
    `run_id` wrote (convention above). Returns the number of versions opened."""
    version_table, fk = VERSIONING[table]
    fmt = {"table": table, "version_table": version_table, "fk": fk}
    params = {"run_id": run_id, "at": db_timestamp(conn, at)}
    conn.execute(text(read_sql("history/end_versions.sql").format(**fmt)), params)
    result = conn.execute(text(read_sql("history/insert_versions.sql").format(**fmt)), params)
    return int(result.rowcount or 0)


def _history_query(conn: Connection, path: str, table: VersionedTable, alias: str) -> str:
    """A history query with `{snapshot}` = the live row `alias` as JSON (the content of a
    current version, whose own snapshot column is NULL)."""
    expression = snapshot_expression(conn.dialect.name, table_columns(conn, table), alias)
    return read_sql(path).format(snapshot=expression)


def changes_in_last_run(conn: Connection, source: str) -> list[dict[str, Any]]:
    """The session versions opened by the source's latest successful run."""
    rows = conn.execute(
        text(
            _history_query(conn, "queries/sessions_changed_in_last_run.sql", "kairos_session", "k")
        ),
        {"source": source},
    )
    return [dict(row._mapping) for row in rows]


def sessions_as_of(conn: Connection, source: str, as_of: datetime) -> list[dict[str, Any]]:
    """The session versions valid at `as_of` (closed sessions excluded)."""
    rows = conn.execute(
        text(_history_query(conn, "queries/sessions_as_of.sql", "kairos_session", "k")),
        {"source": source, "as_of": db_timestamp(conn, as_of)},
    )
    return [dict(row._mapping) for row in rows]


def slots_as_of(conn: Connection, source: str, as_of: datetime) -> list[dict[str, Any]]:
    """The recruitment-slot versions (both origins) of the source's sessions valid at
    `as_of` (closed slots excluded)."""
    rows = conn.execute(
        text(_history_query(conn, "queries/slots_as_of.sql", "recruitment_slot", "r")),
        {"source": source, "as_of": db_timestamp(conn, as_of)},
    )
    return [dict(row._mapping) for row in rows]
