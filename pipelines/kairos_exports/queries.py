"""Read side of the KAIROS exports: account validity, status as of a date, the export.

Queries live in sql/kairos/ (core.db.read_sql). Dates are bound as SQL dates so the
same text runs on PostgreSQL and SQLite; SQLite returns them as ISO text, normalised here.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from datetime import date
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.db import get_engine, read_sql

ExportFormat = Literal["csv", "json"]
EXPORT_COLUMNS = (
    "carif_session",
    "carif_action",
    "dispensateur_siret",
    "kairos_session_id",
    "candidate",
    "status",
    "status_date",
    "origin",
    "modality",
    "source",
    "planned_start",
    "planned_end",
    "entry_date",
    "exit_date",
)
# Spreadsheet formula triggers (OWASP "CSV injection"): = + - @, plus tab and CR.
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _query(name: str, **dates: date) -> sa.TextClause:
    statement = sa.text(read_sql(f"kairos/{name}"))
    return statement.bindparams(
        *(sa.bindparam(key, value, type_=sa.Date) for key, value in dates.items())
    )


def _plain(value: Any) -> Any:
    """JSON-ready value: dates as ISO text (PostgreSQL gives dates, SQLite text)."""
    if isinstance(value, date):
        return value.isoformat()
    return value


def _rows(
    conn: Connection, statement: sa.Executable, params: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    result = conn.execute(statement, dict(params or {}))
    return [{k: _plain(v) for k, v in row._mapping.items()} for row in result]


def valid_accounts(conn: Connection, siret: str, on_date: date) -> list[dict[str, Any]]:
    """Adherent conventions of `siret` valid on `on_date` (empty: no valid KAIROS account)."""
    return _rows(conn, _query("adherent_valid_on.sql", on_date=on_date), {"siret": siret})


def has_valid_account(conn: Connection, siret: str, on_date: date) -> bool:
    return bool(valid_accounts(conn, siret, on_date))


def sessions_without_kairos_account(conn: Connection, on_date: date) -> list[dict[str, Any]]:
    """Open sessions whose dispensateur has no valid KAIROS account on `on_date`."""
    return _rows(conn, _query("sessions_without_kairos_account.sql", on_date=on_date))


def enrolment_status_as_of(conn: Connection, as_of: date) -> list[dict[str, Any]]:
    """Status and status date of every enrolment as of `as_of` (from the events)."""
    return _rows(conn, _query("enrolment_status_as_of.sql", as_of=as_of))


def enrolment_history(conn: Connection, candidate: str) -> list[dict[str, Any]]:
    """Events of a candidate's enrolments (by pseudonym), in order."""
    return _rows(conn, sa.text(read_sql("kairos/enrolment_history.sql")), {"candidate": candidate})


def enrolment_rows(conn: Connection) -> list[dict[str, Any]]:
    return _rows(conn, sa.text(read_sql("kairos/enrolments_export.sql")))


def neutralise_cell(value: Any) -> str:
    """CSV cell text that a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_PREFIXES):
        return "'" + text
    return text


def export_enrolments(db_url: str | None, output_format: ExportFormat = "json") -> str:
    """All enrolments, one object (JSON array) or one CSV line each."""
    engine = get_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = enrolment_rows(conn)
    finally:
        engine.dispose()
    if output_format == "json":
        return json.dumps(rows, ensure_ascii=False, indent=2)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        writer.writerow([neutralise_cell(row.get(column)) for column in EXPORT_COLUMNS])
    return buffer.getvalue()
