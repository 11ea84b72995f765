"""Formation digests: what each source's loads have already seen, byte for byte.

`formation_digest` holds one row per valid formation of the source's current snapshot
(numero, the 64-bit digest of its serialised element, transforms/formation_digest.py, and
its organisation rows);
`formation_digest_basis` says which loader code and source configuration made them. A load
with the same basis skips the formations whose digest is known (their rows are in the
database); any other basis starts again from no digest.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "formation_digest",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("carif_formation_numero", sa.Text(), nullable=False),
        sa.Column("digest", sa.BigInteger(), nullable=False),
        # The formation's organisation rows as staged (JSON): organisations are shared by
        # every formation naming them, so a skipped formation still brings its own to the
        # load's staging, where the usual "N° DA first, then the later one" choice is made.
        sa.Column("organisations", sa.Text(), nullable=True),
        # A numero may occur twice in a snapshot (the later occurrence wins on duplicate
        # keys): both digests are kept.
        sa.PrimaryKeyConstraint("source", "carif_formation_numero", "digest"),
    )
    op.create_table(
        "formation_digest_basis",
        sa.Column("source", sa.Text(), primary_key=True),
        sa.Column("basis", sa.Text(), nullable=False),
        sa.Column("run_id", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("formation_digest_basis")
    op.drop_table("formation_digest")
