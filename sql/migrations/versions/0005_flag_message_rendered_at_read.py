"""Quality flags: the message is rendered when read, not stored per flag.

Check runs store their flags set-based (`INSERT … SELECT` per rule, docs/performance.md): a French
sentence per flag would be formatted in Python for every row (936 k rows at national scale)
and repeat the rule's text in each. New runs leave `message` NULL; readers render it from
rules.yaml and the row's detail columns (`quality_checks.rules.render_message`). Rows of
earlier runs keep the message they were stored with.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("quality_check_result") as batch:
        batch.alter_column("message", existing_type=sa.Text(), nullable=True)


def downgrade() -> None:
    op.execute("UPDATE quality_check_result SET message = '' WHERE message IS NULL")
    with op.batch_alter_table("quality_check_result") as batch:
        batch.alter_column("message", existing_type=sa.Text(), nullable=False)
