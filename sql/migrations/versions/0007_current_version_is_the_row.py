"""History: the current version's content is the row itself; triggers keep ended versions.

Until now every version row carried a JSON snapshot of its row, the current one included: a
first load of the national offer wrote each of its 3.4 M rows twice (the row, then the same
content as JSON, 2.3 KB per session), and the version tables outgrew the data (3.7 GB against
2.7 GB at 1 M sessions, docs/performance.md). Now:

* a new version has `snapshot` NULL while it is current: the row holds its content;
* before any UPDATE changes a row of `kairos_session` or `recruitment_slot`, a trigger
  (sql/history/snapshot_trigger_*.sql) copies the old row, as JSON, into the row's current
  version, so every ended version keeps its snapshot, whoever the writer;
* readers (sql/queries/sessions_as_of.sql, slots_as_of.sql, sessions_changed_in_last_run.sql)
  take the live row for a current version without a snapshot.

Existing version rows keep their snapshots. Downgrade writes the current versions' snapshots
from the rows, then drops the triggers.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.history import (
    VERSIONING,
    drop_snapshot_triggers,
    install_snapshot_triggers,
    snapshot_expression,
    table_columns,
)

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for version_table, _ in VERSIONING.values():
        with op.batch_alter_table(version_table) as batch:
            batch.alter_column("snapshot", existing_type=sa.Text(), nullable=True)
    install_snapshot_triggers(op.get_bind())


def downgrade() -> None:
    conn = op.get_bind()
    drop_snapshot_triggers(conn)
    for table, (version_table, fk) in VERSIONING.items():
        snapshot = snapshot_expression(conn.dialect.name, table_columns(conn, table), "t")
        op.execute(
            f"UPDATE {version_table} SET snapshot = (SELECT {snapshot} FROM {table} AS t "
            f"WHERE t.id = {version_table}.{fk}) WHERE snapshot IS NULL"
        )
        with op.batch_alter_table(version_table) as batch:
            batch.alter_column("snapshot", existing_type=sa.Text(), nullable=False)
