"""Index for linking export lines to KAIROS sessions a batch at a time.

Training-plan, appointments and modalities lines name a session by its CARIF number and a
SIRET, never by source: `ix_kairos_session_carif_number` (carif_session_numero,
dispensateur_siret) serves the batched lookup `carif_session_numero IN (…)`, which the
unique key (source first) cannot.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_kairos_session_carif_number",
        "kairos_session",
        ["carif_session_numero", "dispensateur_siret"],
    )


def downgrade() -> None:
    op.drop_index("ix_kairos_session_carif_number", table_name="kairos_session")
