"""KAIROS session: the offer's URL (`url-action`), for the Region's report.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: rows loaded before this revision get it at their next load (the content
    # hash includes it, so each session is rewritten once, with a new version).
    op.add_column("kairos_session", sa.Column("action_url", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("kairos_session") as batch:
        batch.drop_column("action_url")
