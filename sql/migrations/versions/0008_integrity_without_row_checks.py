"""Integrity of the loaded tables without a check per inserted row.

A national first load inserts 3.4 M rows (sessions, slots and one version each). On the
benchmark's database (docs/performance.md, "Fourth pass"), the foreign keys to `run_ledger`,
from the slots to their sessions and from the version tables to their rows were most of
what storing them cost PostgreSQL: each is a trigger fired per inserted row, queued, then an
index probe and a row lock on the referenced row. Every one of these references is written
by set-based statements from a value that exists by construction (the run id the writer was
just given by `start_run`; the id of a session or row read from its table in the same
transaction), and nothing ever deletes the referenced rows. So, on PostgreSQL:

* the foreign keys to `run_ledger` of the loaded tables (organisation, formation, action,
  kairos_session, recruitment_slot and their version tables), the slots' key to their
  session and the version tables' keys to their rows go;
* `run_ledger`, `kairos_session` and `recruitment_slot` refuse DELETE and TRUNCATE
  (sql/guards/refuse_delete_postgresql.sql): the property those keys gave, no reference left
  dangling by a delete, stays, at no cost to the inserts;
* `sql/queries/integrity_orphans.sql` counts any reference left without its row; the tests
  run it after their loads, and on-call can run it on a production database.

The quality checks' flags lose theirs too (`quality_check_result.check_run_id`: 0.9 M rows
per national check run, each written by one INSERT … SELECT with the id of the run row the
runner has just created); a check run is never deleted, and whoever deletes one one day must
delete its flags first (the key cascaded). The foreign keys of the small tables stay
(enrolments and their events, quarantine, KAIROS adherents, quality check runs). SQLite
keeps every foreign key (dropping one means rebuilding the table, and the embedded default is
not where national loads run) and gets the same delete guards, so both dialects refuse the
same deletes.

Indexes the bulk load maintained for nothing:

* `ix_*_version_open` (row, valid_to_run_id) duplicates the unique (row, version_no) index
  for every lookup by row (a row has a handful of versions);
* `ix_*_version_valid_from`: no query uses it ("as of D" reads every version of a source);
* `ix_*_version_to_run` and `ix_*_closed_run` now hold only the rows that have a value
  (partial): a current version has no end run and an open row no closing run, so a first
  load writes no entry in them at all; every query on them asks for one run id.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.db import execute_trigger_script, read_sql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# What this revision changed, written out here rather than imported: a migration must keep
# doing what it did when later code changes (core/integrity.py lists the current state).
# table → its run-id columns whose foreign key to run_ledger goes (PostgreSQL).
RUN_ID_KEYS = {
    "organisation": ("first_seen_run_id", "last_seen_run_id"),
    "formation": ("first_seen_run_id", "last_seen_run_id", "closed_run_id"),
    "action": ("first_seen_run_id", "last_seen_run_id", "closed_run_id"),
    "kairos_session": ("first_seen_run_id", "last_seen_run_id", "closed_run_id"),
    "recruitment_slot": ("first_seen_run_id", "last_seen_run_id", "closed_run_id"),
    "kairos_session_version": ("valid_from_run_id", "valid_to_run_id"),
    "recruitment_slot_version": ("valid_from_run_id", "valid_to_run_id"),
}
# table → (its key to another loaded row, that row's table) (PostgreSQL).
ROW_KEYS = {
    "recruitment_slot": ("kairos_session_id", "kairos_session"),
    "kairos_session_version": ("kairos_session_id", "kairos_session"),
    "recruitment_slot_version": ("recruitment_slot_id", "recruitment_slot"),
}
# The flags' key to their check run (ON DELETE CASCADE before) (PostgreSQL).
FLAG_KEY = ("quality_check_result", "check_run_id", "quality_check_run")
GUARDED = ("run_ledger", "kairos_session", "recruitment_slot")
# Partial indexes: (name, table, column); they keep their names.
PARTIAL = (
    ("ix_kairos_session_version_to_run", "kairos_session_version", "valid_to_run_id"),
    ("ix_recruitment_slot_version_to_run", "recruitment_slot_version", "valid_to_run_id"),
    ("ix_kairos_session_closed_run", "kairos_session", "closed_run_id"),
    ("ix_recruitment_slot_closed_run", "recruitment_slot", "closed_run_id"),
)
VERSION_TABLES = ("kairos_session_version", "recruitment_slot_version")


def _fk_name(table: str, column: str) -> str:
    return f"{table}_{column}_fkey"  # PostgreSQL's name for the keys of migration 0001


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for table, columns in RUN_ID_KEYS.items():
            for column in columns:
                op.drop_constraint(_fk_name(table, column), table, type_="foreignkey")
        for table, (column, _) in ROW_KEYS.items():
            op.drop_constraint(_fk_name(table, column), table, type_="foreignkey")
        op.drop_constraint(_fk_name(FLAG_KEY[0], FLAG_KEY[1]), FLAG_KEY[0], type_="foreignkey")
    for table in VERSION_TABLES:
        op.drop_index(f"ix_{table}_open", table_name=table)
        op.drop_index(f"ix_{table}_valid_from", table_name=table)
    for name, table, column in PARTIAL:
        op.drop_index(name, table_name=table)
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(name, table, [column], postgresql_where=where, sqlite_where=where)
    template = read_sql(f"guards/refuse_delete_{dialect}.sql")
    for table in GUARDED:
        execute_trigger_script(op.get_bind(), template.format(table=table))


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in GUARDED:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_refuse_delete" + _on(dialect, table))
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS kairos_refuse_delete()")
    for name, table, column in PARTIAL:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, [column])
    for table in VERSION_TABLES:
        fk = ROW_KEYS[table][0]
        op.create_index(f"ix_{table}_open", table, [fk, "valid_to_run_id"])
        op.create_index(f"ix_{table}_valid_from", table, ["valid_from"])
    if dialect == "postgresql":
        for table, columns in RUN_ID_KEYS.items():
            for column in columns:
                op.create_foreign_key(
                    _fk_name(table, column), table, "run_ledger", [column], ["id"]
                )
        for table, (column, target) in ROW_KEYS.items():
            op.create_foreign_key(_fk_name(table, column), table, target, [column], ["id"])
        table, column, target = FLAG_KEY
        op.create_foreign_key(
            _fk_name(table, column), table, target, [column], ["id"], ondelete="CASCADE"
        )


def _on(dialect: str, table: str) -> str:
    return f" ON {table}" if dialect == "postgresql" else ""
