"""The set-based steps of an LHEO snapshot load (pipelines/load.py): staged rows → target
tables; the load's ledger entry and errors.

Each target table is matched with its staging table by natural key (`ENTITIES`); the SQL
templates of sql/load/ are filled per entity (`_statement`) and run set-based: update the
changed rows, insert the new ones, close the vanished ones (never delete), keep the rows of
formations skipped as unchanged or rejected. PostgreSQL gets fresh statistics and a larger
work memory for the transaction, and hash joins for the closings.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from core import settings
from core.db import named_statements, read_sql
from pipelines.load_staging import (
    ACTION_COLUMNS,
    FORMATION_COLUMNS,
    SESSION_COLUMNS,
    SLOT_TARGET_COLUMNS,
)
from transforms.records import QuarantinedRecord

RUN_KIND = "lheo"


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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


@dataclass(frozen=True, slots=True)
class Entity:
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
ENTITIES: dict[str, Entity] = {
    "formation": Entity(
        "formation",
        "stg_formation",
        FORMATION_COLUMNS,
        _SESSION_SCOPE,
        "{t}.carif_formation_numero = s.carif_formation_numero",
    ),
    "action": Entity(
        "action",
        "stg_action",
        ACTION_COLUMNS,
        _SESSION_SCOPE,
        "{t}.carif_action_numero = s.carif_action_numero",
    ),
    "kairos_session": Entity(
        "kairos_session",
        "stg_session",
        SESSION_COLUMNS,
        _SESSION_SCOPE,
        "{t}.carif_session_numero = s.carif_session_numero"
        " AND {t}.dispensateur_siret = s.dispensateur_siret",
    ),
    # The LHEO loader owns origin='lheo' slots only; origin='kairos' ones belong to the
    # KAIROS exports ingestion and are never touched here.
    "recruitment_slot": Entity(
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


def statement(name: str, entity: Entity, *, kept: bool = False) -> str:
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


def run_named(
    conn: Connection,
    path: str,
    params: dict[str, Any],
    skip: Callable[[str, dict[str, int]], bool] | None = None,
) -> dict[str, int]:
    """Run the statements of a SQL file; counts of the named ones. `skip(name, counts so
    far)` leaves a named statement out (its count is then 0)."""
    counts: dict[str, int] = {}
    for name, statement in named_statements(read_sql(path)):
        if name and skip is not None and skip(name, counts):
            counts[name] = 0
            continue
        result = conn.execute(text(statement), params)
        if name:
            counts[name] = int(result.rowcount or 0)
    return counts


def needless_dedupe(name: str, counts: dict[str, int]) -> bool:
    """A slot can only lose its session when a session occurrence was dropped."""
    return (
        name == "orphan_slots"
        and counts.get("duplicate_sessions") == 0
        and counts.get("superseded_sessions") == 0
    )


LOAD_WORK_MEM = "256MB"


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


def analyze(conn: Connection, *tables: str) -> None:
    """Fresh PostgreSQL statistics for tables this transaction just filled: autovacuum has
    not seen them yet, and with stale counts (an empty table "has" 0 rows) the planner picks
    nested loops that turn a 1 M-row upsert quadratic. Sampled, so cheap at any size.
    SQLite plans from its indexes without statistics, and its ANALYZE reads whole tables."""
    if conn.dialect.name == "postgresql":
        for table in tables:
            conn.exec_driver_sql(f"ANALYZE {table}")


def bulk_settings(conn: Connection) -> None:
    """PostgreSQL memory for this transaction's sorts, hashes and index builds. The server
    default (4 MB) makes every million-row sort, window and hash join of the set-based steps
    spill to temporary files; the load is one session, so a larger budget for it alone is
    safe (KAIROS_LOAD_WORK_MEM; SET LOCAL, so it ends with the transaction)."""
    if conn.dialect.name != "postgresql":
        return
    budget = settings.get("KAIROS_LOAD_WORK_MEM", LOAD_WORK_MEM)
    for setting in ("work_mem", "maintenance_work_mem"):
        conn.execute(
            text("SELECT set_config(:name, :value, true)"), {"name": setting, "value": budget}
        )


@contextmanager
def hash_joins_only(conn: Connection) -> Iterator[None]:
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
    updated = conn.execute(text(statement("update_changed", entity)), params).rowcount
    inserted = conn.execute(text(statement("insert_new", entity)), params).rowcount
    if inserted:
        analyze(
            conn, STATS.get(entity.table, entity.table)
        )  # the closing's anti-join must see the new rows
    closed = 0
    if close:
        closing = statement("close_vanished", entity, kept=kept)
        with hash_joins_only(conn):
            closed = conn.execute(text(closing), params).rowcount
    return int(updated or 0), int(inserted or 0), int(closed or 0)


def store_quarantine(
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
