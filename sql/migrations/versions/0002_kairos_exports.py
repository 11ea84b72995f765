"""KAIROS and France Travail exports: adherent accounts, enrolments and their events.

Revision ID: 0002
Revises: 0001

These tables (docs/kairos-exports.md) reference the core model of 0001
(`run_ledger`, `kairos_session`, `recruitment_slot`) and store no personal data: candidates
are keyed pseudonyms, account managers' names and contacts are not kept.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen copy of pipelines.kairos_exports.lifecycle.Status at this revision: a migration
# must not change meaning when the application code evolves.
STATUSES = (
    "positionne",
    "contacte",
    "injoignable",
    "refus_candidat",
    "present",
    "absent",
    "rdv_annule",
    "rdv_supprime",
    "retenu",
    "retenu_en_attente",
    "non_retenu",
    "a_valider",
    "inscrit",
    "entre",
    "absent_entree",
    "interruption",
    "abandon",
    "sorti",
)
SOURCES = ("training-plans", "appointments")

# Same id type as 0001: BIGINT on PostgreSQL, INTEGER (the rowid alias) on SQLite.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _seen_runs() -> list[sa.Column[object]]:
    return [
        sa.Column("first_seen_run_id", BigId, sa.ForeignKey("run_ledger.id"), nullable=False),
        sa.Column("last_seen_run_id", BigId, sa.ForeignKey("run_ledger.id"), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "kairos_adherent",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        # siret|convention|start: one row per account and convention period.
        sa.Column("adherent_key", sa.Text, nullable=False, unique=True),
        sa.Column("siret", sa.String(14), nullable=False, index=True),
        sa.Column("libelle", sa.Text),
        sa.Column("region", sa.Text),
        sa.Column("nouvelle_region", sa.Text),
        sa.Column("assedic", sa.Text),
        sa.Column("convention", sa.Text),
        sa.Column("convention_start", sa.Date),
        sa.Column("convention_end", sa.Date),
        sa.Column("content_hash", sa.String(64), nullable=False),
        *_seen_runs(),
        *_timestamps(),
        sa.CheckConstraint(
            "convention_start IS NULL OR convention_end IS NULL "
            "OR convention_start <= convention_end",
            name="ck_kairos_adherent_period",
        ),
    )

    op.create_table(
        "enrolment",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        # session_key|dispensateur_siret|candidate: the natural key.
        sa.Column("enrolment_key", sa.Text, nullable=False, unique=True),
        sa.Column("candidate", sa.String(44), nullable=False),
        sa.Column("candidate_local", sa.String(44), index=True),
        sa.Column("candidate_national", sa.String(44), index=True),
        # CARIF session number, or "ft:<dn_session_id>" when the export lacks it.
        sa.Column("session_key", sa.Text, nullable=False),
        sa.Column("carif_session_numero", sa.Text),
        sa.Column("carif_action_numero", sa.Text),
        sa.Column("ft_session_id", sa.Text),
        sa.Column("dispensateur_siret", sa.String(14), nullable=False),
        sa.Column("responsable_siret", sa.String(14)),
        sa.Column(
            "kairos_session_id",
            BigId,
            sa.ForeignKey("kairos_session.id", ondelete="SET NULL"),
            index=True,
        ),
        sa.Column("link_method", sa.Text),
        sa.Column("origin", sa.Text),
        sa.Column("first_source", sa.Text, nullable=False),
        sa.Column("last_source", sa.Text, nullable=False),
        sa.Column("current_status", sa.Text, nullable=False),
        sa.Column("status_date", sa.Date, nullable=False),
        sa.Column("current_slot_key", sa.Text),
        sa.Column("modality", sa.Text),
        sa.Column("planned_start", sa.Date),
        sa.Column("planned_end", sa.Date),
        sa.Column("entry_date", sa.Date),
        sa.Column("exit_date", sa.Date),
        sa.Column("formation_id", sa.Text),
        sa.Column("formation_label", sa.Text),
        sa.Column("dispositif", sa.Text),
        sa.Column("financeurs", sa.Text),
        sa.Column("lieu_postal_code", sa.Text),
        sa.Column("lieu_insee", sa.Text),
        sa.Column("content_hash", sa.String(64), nullable=False),
        *_seen_runs(),
        *_timestamps(),
        sa.CheckConstraint(_in("current_status", STATUSES), name="ck_enrolment_status"),
        sa.CheckConstraint(_in("first_source", SOURCES), name="ck_enrolment_first_source"),
        sa.CheckConstraint(_in("last_source", SOURCES), name="ck_enrolment_last_source"),
        sa.CheckConstraint(
            "link_method IS NULL OR link_method IN ('dispensateur', 'responsable')",
            name="ck_enrolment_link_method",
        ),
    )
    op.create_index(
        "ix_enrolment_session", "enrolment", ["carif_session_numero", "dispensateur_siret"]
    )

    op.create_table(
        "enrolment_event",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "enrolment_id",
            BigId,
            sa.ForeignKey("enrolment.id", ondelete="CASCADE"),
            nullable=False,
        ),
        # Order of the events of one enrolment (dates can tie).
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("previous_status", sa.Text),
        sa.Column("event_date", sa.Date, nullable=False),
        sa.Column("slot_key", sa.Text),
        sa.Column(
            "recruitment_slot_id",
            BigId,
            sa.ForeignKey("recruitment_slot.id", ondelete="SET NULL"),
        ),
        sa.Column("source_kind", sa.Text, nullable=False),
        sa.Column("run_id", BigId, sa.ForeignKey("run_ledger.id"), nullable=False),
        sa.Column("source_line", sa.Integer),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("enrolment_id", "seq", name="uq_enrolment_event_seq"),
        sa.CheckConstraint(_in("status", STATUSES), name="ck_enrolment_event_status"),
        sa.CheckConstraint(
            "previous_status IS NULL OR " + _in("previous_status", STATUSES),
            name="ck_enrolment_event_previous_status",
        ),
        sa.CheckConstraint(_in("source_kind", SOURCES), name="ck_enrolment_event_source"),
    )
    op.create_index("ix_enrolment_event_date", "enrolment_event", ["enrolment_id", "event_date"])


def downgrade() -> None:
    op.drop_table("enrolment_event")
    op.drop_table("enrolment")
    op.drop_table("kairos_adherent")
