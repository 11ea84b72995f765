"""What KAIROS really offers a prescriber: recruitment modalities from KAIROS, shared funded
places, and the two kinds of "blocked".

* `recruitment_slot.status`: `open`, `closed`, `cancelled` as KAIROS says it (the modalities
  export's `statut`), NULL when the source does not say (LHEO): a closed or cancelled
  modality is not open;
* `kairos_export_coverage`: which CARIF source's sessions a KAIROS modalities export covered,
  and on which day: a session is "bloquée" only when a recent export saw no open modality
  for it either (docs/quality-checks.md);
* `kairos_modality_unmatched`: modalities export lines naming no KAIROS session we hold,
  kept (and counted) rather than dropped;
* `kairos_session.funded_places_lheo`, `funded_places_shared_by`: the LHEO session's funded
  places and how many dispensateurs share them (`funded_places_total` now counts them once,
  on the first dispensateur's row);
* `quality_check_run.sessions_unverified`: sessions with no open modality in the offer whose
  KAIROS side was not checked recently (the headline's second figure).

SQLite's history triggers list the columns: installed again.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.history import drop_snapshot_triggers, install_snapshot_triggers

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Plain ADD COLUMN (a SQLite batch rebuild would drop the tables' triggers).
    op.add_column("recruitment_slot", sa.Column("status", sa.Text(), nullable=True))
    op.add_column("kairos_session", sa.Column("funded_places_lheo", sa.Integer(), nullable=True))
    op.add_column(
        "kairos_session",
        sa.Column("funded_places_shared_by", sa.Integer(), nullable=False, server_default="1"),
    )
    op.add_column("quality_check_run", sa.Column("sessions_unverified", sa.Integer()))
    op.create_table(
        "kairos_export_coverage",
        sa.Column("run_id", BigId, sa.ForeignKey("run_ledger.id"), nullable=False),
        sa.Column("run_kind", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),  # the CARIF source covered
        sa.Column("seen_on", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "source"),
    )
    op.create_index(
        "ix_kairos_export_coverage_source", "kairos_export_coverage", ["source", "seen_on"]
    )
    op.create_table(
        "kairos_modality_unmatched",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("run_id", BigId, sa.ForeignKey("run_ledger.id"), nullable=False),
        sa.Column("file", sa.Text(), nullable=True),
        sa.Column("line", sa.Integer(), nullable=True),
        sa.Column("carif_session_numero", sa.Text(), nullable=False),
        sa.Column("dispensateur_siret", sa.Text(), nullable=False),
        sa.Column("modality", sa.Text(), nullable=False),
        sa.Column("starts_on", sa.Date(), nullable=True),
        sa.Column("ends_on", sa.Date(), nullable=True),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
    )
    op.create_index("ix_kairos_modality_unmatched_run", "kairos_modality_unmatched", ["run_id"])
    install_snapshot_triggers(op.get_bind())


def downgrade() -> None:
    op.drop_table("kairos_modality_unmatched")
    op.drop_table("kairos_export_coverage")
    op.drop_column("quality_check_run", "sessions_unverified")
    drop_snapshot_triggers(op.get_bind())
    op.drop_column("kairos_session", "funded_places_shared_by")
    op.drop_column("kairos_session", "funded_places_lheo")
    op.drop_column("recruitment_slot", "status")
    install_snapshot_triggers(op.get_bind())
