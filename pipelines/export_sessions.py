"""`kairos-sync export sessions`: the open KAIROS sessions with their recruitment slots.

`slots` lists every current slot of a session with its state on the as-of date (default
today): `open` by the quality checks' own definition (sql/fragments/open_slot.sql), else why
not (`past`, `no_places`, `closed`, `cancelled`, `not_yet_open`, `not_a_kairos_modality`);
`open_slots` lists the open ones only.

Streams: sessions and slots are read in session-id order by two queries
(sql/queries/export_sessions.sql, export_slots.sql) and merged, so a national table never
sits in memory. JSON output is one array of objects; CSV has one line per session with the
slots as JSON text cells. CSV cells that a spreadsheet would read as a formula
(starting with = + - @, tab or carriage return) are prefixed with a quote (OWASP CSV
injection): LHEO texts are typed by training organisations, not by us.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any, Literal, TextIO

from sqlalchemy import Connection, Date, bindparam, text

from core.db import get_engine, read_query, read_sql

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
    "registration_debut",
    "registration_fin",
    "place_city",
    "place_postal_code",
    "place_departement",
    "funded_places_total",
    "funded_places_lheo",
    "funded_places_shared_by",
    "undated_ico_count",
    "formation_rejected_run_id",
    "open_slots_count",
    "open_slots",
    "slots",
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


def iter_sessions(conn: Connection, as_of: date | None = None) -> Iterator[dict[str, Any]]:
    """Open sessions in id order, each with `slots` (every current slot, with its `state` on
    `as_of`, default today) and `open_slots` (those open on `as_of`)."""
    on = as_of or date.today()
    streaming = conn.execution_options(stream_results=True, yield_per=2000)
    sessions = streaming.execute(text(read_sql("queries/export_sessions.sql")))
    slot_conn = conn.engine.connect().execution_options(stream_results=True, yield_per=2000)
    try:
        slots = slot_conn.execute(
            text(read_query("queries/export_slots.sql")).bindparams(
                bindparam("as_of", on, type_=Date())
            )
        )
        slot_iter = iter(slots)
        pending = next(slot_iter, None)
        for row in sessions:
            session = {k: _plain(v) for k, v in row._mapping.items()}
            session_id = session.pop("id")
            listed: list[dict[str, Any]] = []
            while pending is not None and pending.kairos_session_id <= session_id:
                if pending.kairos_session_id == session_id:
                    slot = {k: _plain(v) for k, v in pending._mapping.items()}
                    slot.pop("kairos_session_id")
                    if slot.get("remote") is not None:
                        slot["remote"] = bool(slot["remote"])
                    listed.append(slot)
                pending = next(slot_iter, None)
            session["open_slots"] = [s for s in listed if s["state"] == "open"]
            session["slots"] = listed
            yield session
    finally:
        slot_conn.close()


def export_sessions(
    out: TextIO,
    *,
    db_url: str | None = None,
    fmt: ExportFormat = "json",
    as_of: date | None = None,
) -> int:
    """Write the export to `out` (slot states as of `as_of`, default today); returns the
    number of sessions."""
    engine = get_engine(db_url)
    count = 0
    try:
        with engine.connect() as conn:
            if fmt == "csv":
                writer = csv.writer(out, lineterminator="\n")
                writer.writerow(CSV_COLUMNS)
                for session in iter_sessions(conn, as_of):
                    session["open_slots_count"] = len(session["open_slots"])
                    for cell in ("open_slots", "slots"):
                        session[cell] = json.dumps(session[cell], ensure_ascii=False)
                    writer.writerow([neutralise_cell(session.get(c)) for c in CSV_COLUMNS])
                    count += 1
            else:
                out.write("[")
                for session in iter_sessions(conn, as_of):
                    out.write("\n" if count == 0 else ",\n")
                    out.write(json.dumps(session, ensure_ascii=False))
                    count += 1
                out.write("\n]\n" if count else "]\n")
    finally:
        engine.dispose()
    return count
