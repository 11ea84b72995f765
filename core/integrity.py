"""Referential integrity the database does not check row by row (migration 0008).

On PostgreSQL the loaded tables' run ids, the slots' key to their session, the version tables'
keys to their rows and the quality flags' key to their check run have no foreign key:
checked per inserted row, they were most of what a national first load (and a check run)
cost the database (docs/performance.md). Every such reference is written set-based from a
value that exists by construction; run_ledger, kairos_session and recruitment_slot refuse
DELETE and TRUNCATE (sql/guards/), and check runs are never deleted. `orphan_references`
says so on a real database: for each reference, how many rows name a row that does not
exist. All counts must be 0; the tests check it after their loads and check runs, and
`kairos-sync integrity` runs it for on-call (exit 1 otherwise).
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import Connection, text

from core.db import read_sql


class Reference(NamedTuple):
    table: str
    column: str
    target: str


_RUN_IDS = {
    "organisation": ("first_seen_run_id", "last_seen_run_id"),
    "formation": ("first_seen_run_id", "last_seen_run_id", "closed_run_id"),
    "action": ("first_seen_run_id", "last_seen_run_id", "closed_run_id"),
    "kairos_session": (
        "first_seen_run_id",
        "last_seen_run_id",
        "closed_run_id",
        "formation_rejected_run_id",
    ),
    "recruitment_slot": ("first_seen_run_id", "last_seen_run_id", "closed_run_id"),
    "kairos_session_version": ("valid_from_run_id", "valid_to_run_id"),
    "recruitment_slot_version": ("valid_from_run_id", "valid_to_run_id"),
}
UNCHECKED_REFERENCES: tuple[Reference, ...] = (
    *(
        Reference(table, column, "run_ledger")
        for table, columns in _RUN_IDS.items()
        for column in columns
    ),
    Reference("recruitment_slot", "kairos_session_id", "kairos_session"),
    Reference("kairos_session_version", "kairos_session_id", "kairos_session"),
    Reference("recruitment_slot_version", "recruitment_slot_id", "recruitment_slot"),
    Reference("quality_check_result", "check_run_id", "quality_check_run"),
)


def orphan_references(conn: Connection) -> dict[str, int]:
    """`table.column` → rows naming a missing row, for every unchecked reference."""
    template = read_sql("queries/integrity_orphans.sql")
    return {
        f"{ref.table}.{ref.column}": int(
            conn.execute(text(template.format(**ref._asdict()))).scalar_one()
        )
        for ref in UNCHECKED_REFERENCES
    }
