"""Quality checks: check runs and their flagged rows (docs/quality-checks.md).

Revision ID: 0003
Revises: 0002

`quality_check_run` is one evaluation of every rule "as of" a date (it also has a
`run_ledger` row, run_kind 'quality_check', so the ledger lists every run of the chain);
`quality_check_result` holds every row a rule flagged. Trends, "new since last run" and
"resolved since last run" are queries over these two tables (sql/queries/quality_*.sql).

No personal data: a flag names a KAIROS session, organisations' SIRET and counts, never a
candidate (the enrolment rules store a count of pseudonymised enrolments, not who).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "quality_check_run",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("run_ledger_id", BigId, sa.ForeignKey("run_ledger.id"), nullable=False),
        # NULL: every source of the database was checked.
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("started_at", Timestamp, nullable=False),
        sa.Column("finished_at", Timestamp, nullable=True),
        sa.Column("status", sa.Text(), nullable=False),  # running|succeeded|failed
        # Headline figures frozen at check time, so the trend chart never recomputes the past.
        sa.Column("sessions_current", sa.Integer(), nullable=True),
        sa.Column("sessions_recruiting", sa.Integer(), nullable=True),
        sa.Column("sessions_blocked", sa.Integer(), nullable=True),
        sa.Column("flags_total", sa.Integer(), nullable=True),
        # JSON: per-rule counts and the GX column expectations' outcome.
        sa.Column("summary_json", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'succeeded', 'failed')", name="ck_quality_check_run_status"
        ),
    )
    op.create_index("ix_quality_check_run_source", "quality_check_run", ["source", "status", "id"])

    op.create_table(
        "quality_check_result",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "check_run_id",
            BigId,
            sa.ForeignKey("quality_check_run.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("rule_id", sa.Text(), nullable=False),
        sa.Column("severity", sa.Text(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        # No FK: a flag outlives nothing but must not block the loader's history work either.
        sa.Column("kairos_session_id", BigId, nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("carif_formation_numero", sa.Text(), nullable=True),
        sa.Column("carif_action_numero", sa.Text(), nullable=True),
        sa.Column("carif_session_numero", sa.Text(), nullable=True),
        # The party who must act (DOMAIN.md: one dispensateur = one SIRET = one KAIROS account).
        sa.Column("dispensateur_siret", sa.Text(), nullable=True),
        sa.Column("mandataire_siret", sa.Text(), nullable=True),
        sa.Column("departement", sa.Text(), nullable=True),
        # What exactly is wrong within the session (a slot key, a field list…), '' if nothing.
        sa.Column("detail_key", sa.Text(), nullable=False),
        sa.Column("detail_count", sa.Integer(), nullable=True),
        sa.Column("detail_date", sa.Date(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        # rule|source|session|dispensateur|detail_key: the identity compared across runs.
        sa.Column("flag_key", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "severity IN ('error', 'warning', 'info')", name="ck_quality_check_result_severity"
        ),
        sa.UniqueConstraint("check_run_id", "flag_key", name="uq_quality_check_result_flag"),
    )
    op.create_index(
        "ix_quality_check_result_run_rule", "quality_check_result", ["check_run_id", "rule_id"]
    )
    op.create_index(
        "ix_quality_check_result_session", "quality_check_result", ["kairos_session_id"]
    )

    # Plans of the rules (sql/checks): slots are looked up per session and modality, and the
    # enrolment rules walk enrolments of one session by status.
    op.create_index(
        "ix_recruitment_slot_session_modality",
        "recruitment_slot",
        ["kairos_session_id", "modality", "starts_on"],
    )
    op.create_index(
        "ix_enrolment_session_status", "enrolment", ["kairos_session_id", "current_status"]
    )
    op.create_index("ix_enrolment_event_slot", "enrolment_event", ["recruitment_slot_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_enrolment_event_slot", table_name="enrolment_event")
    op.drop_index("ix_enrolment_session_status", table_name="enrolment")
    op.drop_index("ix_recruitment_slot_session_modality", table_name="recruitment_slot")
    op.drop_table("quality_check_result")
    op.drop_table("quality_check_run")
