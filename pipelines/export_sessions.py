"""`kairos-sync export sessions`: the open KAIROS sessions with their open recruitment slots.

Streams: sessions and slots are read in session-id order by two queries
(sql/queries/export_sessions.sql, export_open_slots.sql) and merged, so a national table
never sits in memory. JSON output is one array of objects; CSV has one line per session with
the slots as a JSON text cell. CSV cells that a spreadsheet would read as a formula
(starting with = + - @, tab or carriage return) are prefixed with a quote (OWASP CSV
injection): LHEO texts are typed by training organisations, not by us.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any, Literal, TextIO

from sqlalchemy import Connection, text

from pipelines.db import get_engine, read_sql

ExportFormat = Literal["csv", "json"]
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS = (
    "source",
    "carif_formation",
    "carif_action",
    "carif_session",
    "dispensateur_siret",
    "dispensateur_raison_sociale",
    "mandataire_siret",
    "split_reason",
    "intitule",
    "main_formacode",
    "etat_recrutement",
    "debut",
    "debut_precision",
    "fin",
    "fin_precision",
    "place_city",
    "place_postal_code",
    "funded_places_total",
    "open_slots_count",
    "open_slots",
)


def neutralise_cell(value: object) -> str:
    """A CSV cell that no spreadsheet evaluates as a formula."""
    if value is None:
        return ""
    cell = value if isinstance(value, str) else str(value)
    return "'" + cell if cell.startswith(FORMULA_PREFIXES) else cell


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def iter_sessions(conn: Connection) -> Iterator[dict[str, Any]]:
    """Open sessions in id order, each with `open_slots` (list of dicts)."""
    streaming = conn.execution_options(stream_results=True, yield_per=2000)
    sessions = streaming.execute(text(read_sql("queries/export_sessions.sql")))
    slot_conn = conn.engine.connect().execution_options(stream_results=True, yield_per=2000)
    try:
        slots = slot_conn.execute(text(read_sql("queries/export_open_slots.sql")))
        slot_iter = iter(slots)
        pending = next(slot_iter, None)
        for row in sessions:
            session = {k: _plain(v) for k, v in row._mapping.items()}
            session_id = session.pop("id")
            open_slots: list[dict[str, Any]] = []
            while pending is not None and pending.kairos_session_id <= session_id:
                if pending.kairos_session_id == session_id:
                    slot = {k: _plain(v) for k, v in pending._mapping.items()}
                    slot.pop("kairos_session_id")
                    if slot.get("remote") is not None:
                        slot["remote"] = bool(slot["remote"])
                    open_slots.append(slot)
                pending = next(slot_iter, None)
            session["open_slots"] = open_slots
            yield session
    finally:
        slot_conn.close()


def export_sessions(out: TextIO, *, db_url: str | None = None, fmt: ExportFormat = "json") -> int:
    """Write the export to `out`; returns the number of sessions."""
    engine = get_engine(db_url)
    count = 0
    try:
        with engine.connect() as conn:
            if fmt == "csv":
                writer = csv.writer(out, lineterminator="\n")
                writer.writerow(CSV_COLUMNS)
                for session in iter_sessions(conn):
                    session["open_slots_count"] = len(session["open_slots"])
                    session["open_slots"] = json.dumps(session["open_slots"], ensure_ascii=False)
                    writer.writerow([neutralise_cell(session.get(c)) for c in CSV_COLUMNS])
                    count += 1
            else:
                out.write("[")
                for session in iter_sessions(conn):
                    out.write("\n" if count == 0 else ",\n")
                    out.write(json.dumps(session, ensure_ascii=False))
                    count += 1
                out.write("\n]\n" if count else "]\n")
    finally:
        engine.dispose()
    return count
