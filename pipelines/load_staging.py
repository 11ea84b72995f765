"""Staging of one LHEO snapshot load: temporary tables filled in batches (pipelines/load.py).

Mapped rows (transforms/kairos_mapping.py) are buffered and flushed to private temporary
tables — PostgreSQL `COPY … FROM STDIN`, SQLite `executemany` — whose columns follow the
target tables (sql/load/create_staging.sql). The set-based statements of
pipelines/load_steps.py then apply them. Memory holds one batch, not the file.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

from sqlalchemy import Connection, text

from core.config import SourceConfig
from core.copy_format import copy_text
from core.db import copy_in, named_statements, read_sql
from pipelines.load_parallel import Block, new_buffers, stage_record
from transforms.formation_digest import UnchangedFormation
from transforms.kairos_mapping import (
    ActionRow,
    FormationRow,
    OrganisationRow,
    SessionRow,
    SlotRow,
)
from transforms.records import Formation, QuarantinedRecord

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


def copy_rows(rows: Sequence[Sequence[object]]) -> io.StringIO:
    """Rows in COPY text format (tab-separated, \\N for NULL, backslash escapes)."""
    return copy_text(rows)


class Stager:
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
            copy_in(self.conn, table, self.columns[table], io.StringIO("".join(texts)))
            texts.clear()
        for table, rows in self.buffers.items():
            if not rows:
                continue
            columns = self.columns[table]
            if self.postgres:
                copy_in(self.conn, table, columns, copy_rows(rows))
            else:
                marks = ", ".join("?" for _ in columns)
                self.conn.exec_driver_sql(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows
                )
            self.staged[table] += len(rows)
            rows.clear()


def restage_organisations(conn: Connection, stager: Stager, source: str) -> int:
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


def create_staging(conn: Connection) -> None:
    temp = "pg_temp" if conn.dialect.name == "postgresql" else "temp"
    script = read_sql("load/create_staging.sql").format(
        temp=temp,
        organisation_columns=", ".join(ORGANISATION_COLUMNS),
        formation_columns=", ".join(FORMATION_COLUMNS),
        action_columns=", ".join(ACTION_COLUMNS),
        session_columns=", ".join(SESSION_COLUMNS),
        slot_columns=_qualified("recruitment_slot", SLOT_TARGET_COLUMNS),
    )
    for _, statement in named_statements(script):
        conn.exec_driver_sql(statement)


def drop_staging(conn: Connection) -> None:
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
