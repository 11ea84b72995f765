"""KAIROS session: what real offers carry (registration period, placeholders, undated
information meetings) and the mark of a formation the latest snapshot rejected.

* `registration_debut` / `registration_fin` / `registration_raw`: LHEO `periode-inscription`
  (registration can stay open after the session has started);
* `placeholder_fields`: text columns holding `-`, `Non renseigné`… (kept as written,
  counted as missing by the checks; transforms/placeholders.py);
* `undated_ico_count`: information meetings the offer announces without a date
  (`00000000`), which give no recruitment slot;
* `formation_rejected_run_id`, `formation_rejected_on`, `formation_rejected_reason`: the
  run (and its date) whose snapshot first quarantined the session's formation, and the
  first reason of the latest rejection (the session stays as last loaded, never closed for
  it; all NULL once the formation is valid again). A run id like the others of migration
  0008: no per-row foreign key, `kairos-sync integrity` checks it.

Rows loaded before get the new values at their next load (the content hash covers them).
SQLite's history trigger lists the columns: it is installed again.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.history import drop_snapshot_triggers, install_snapshot_triggers

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
COLUMNS = (
    ("registration_debut", sa.Date()),
    ("registration_fin", sa.Date()),
    ("registration_raw", sa.Text()),
    ("placeholder_fields", sa.Text()),
    ("formation_rejected_on", sa.Date()),
    ("formation_rejected_reason", sa.Text()),
)


def upgrade() -> None:
    # Plain ALTER TABLE … ADD COLUMN on both dialects (a batch rebuild on SQLite would drop
    # the table's triggers: history and the delete guard of migration 0008).
    for name, type_ in COLUMNS:
        op.add_column("kairos_session", sa.Column(name, type_, nullable=True))
    op.add_column(
        "kairos_session",
        sa.Column("undated_ico_count", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column("kairos_session", sa.Column("formation_rejected_run_id", BigId, nullable=True))
    op.create_index(
        "ix_kairos_session_rejected_run",
        "kairos_session",
        ["formation_rejected_run_id"],
        postgresql_where=sa.text("formation_rejected_run_id IS NOT NULL"),
        sqlite_where=sa.text("formation_rejected_run_id IS NOT NULL"),
    )
    install_snapshot_triggers(op.get_bind())


def downgrade() -> None:
    op.drop_index("ix_kairos_session_rejected_run", table_name="kairos_session")
    # SQLite refuses to drop a column its history trigger names: drop the triggers first.
    drop_snapshot_triggers(op.get_bind())
    for name in ("formation_rejected_run_id", "undated_ico_count", *(c for c, _ in COLUMNS)):
        op.drop_column("kairos_session", name)
    install_snapshot_triggers(op.get_bind())
