"""Core model: organisations, formations, actions, KAIROS sessions, recruitment slots,
their version history, the run ledger and the quarantine (docs/data-model.md).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Ids: BIGINT on PostgreSQL (version tables grow every night), INTEGER on SQLite where only
# `INTEGER PRIMARY KEY` is the rowid alias that autoincrements.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


def _run_fk(name: str, *, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, BigId, sa.ForeignKey("run_ledger.id"), nullable=nullable)


def _lifecycle() -> list[sa.Column[Any]]:
    """Columns every incrementally loaded table shares (see docs/data-model.md, History).

    last_seen_run_id is the latest run that *wrote* the row (insert, change, reopen):
    unchanged rows are never rewritten, and a row still open is present in every later
    successful snapshot of its source by the closing rule.
    """
    return [
        sa.Column("content_hash", sa.Text(), nullable=False),
        _run_fk("first_seen_run_id", nullable=False),
        _run_fk("last_seen_run_id", nullable=False),
        sa.Column("closed_at", Timestamp, nullable=True),
        _run_fk("closed_run_id"),
    ]


def _version_table(name: str, entity_table: str, entity_fk: str) -> None:
    op.create_table(
        name,
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(entity_fk, BigId, sa.ForeignKey(f"{entity_table}.id"), nullable=False),
        sa.Column("version_no", sa.Integer(), nullable=False),
        # insert | update | close | reopen
        sa.Column("change_kind", sa.Text(), nullable=False),
        _run_fk("valid_from_run_id", nullable=False),
        _run_fk("valid_to_run_id"),
        sa.Column("valid_from", Timestamp, nullable=False),
        sa.Column("valid_to", Timestamp, nullable=True),
        sa.Column("content_hash", sa.Text(), nullable=False),
        sa.Column("snapshot", sa.Text(), nullable=False),  # JSON object of the row's columns
        sa.UniqueConstraint(entity_fk, "version_no", name=f"uq_{name}_entity_version"),
    )
    op.create_index(f"ix_{name}_open", name, [entity_fk, "valid_to_run_id"])
    op.create_index(f"ix_{name}_from_run", name, ["valid_from_run_id"])
    op.create_index(f"ix_{name}_to_run", name, ["valid_to_run_id"])
    op.create_index(f"ix_{name}_valid_from", name, ["valid_from"])


def upgrade() -> None:
    op.create_table(
        "run_ledger",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("run_kind", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("snapshot_file", sa.Text(), nullable=True),
        sa.Column("snapshot_sha256", sa.Text(), nullable=True),
        sa.Column("lheo_version", sa.Text(), nullable=True),
        sa.Column("started_at", Timestamp, nullable=False),
        sa.Column("finished_at", Timestamp, nullable=True),
        sa.Column("status", sa.Text(), nullable=False),  # running|succeeded|failed|noop
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("formations_read", sa.Integer(), nullable=True),
        sa.Column("formations_valid", sa.Integer(), nullable=True),
        sa.Column("formations_quarantined", sa.Integer(), nullable=True),
        sa.Column("sessions_inserted", sa.Integer(), nullable=True),
        sa.Column("sessions_updated", sa.Integer(), nullable=True),
        sa.Column("sessions_unchanged", sa.Integer(), nullable=True),
        sa.Column("sessions_closed", sa.Integer(), nullable=True),
        sa.Column("slots_inserted", sa.Integer(), nullable=True),
        sa.Column("slots_updated", sa.Integer(), nullable=True),
        sa.Column("slots_closed", sa.Integer(), nullable=True),
        sa.Column("counts_json", sa.Text(), nullable=True),
    )
    op.create_index("ix_run_ledger_kind_source", "run_ledger", ["run_kind", "source", "id"])

    op.create_table(
        "quarantine",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("run_id", BigId, sa.ForeignKey("run_ledger.id"), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("file", sa.Text(), nullable=True),
        sa.Column("record_kind", sa.Text(), nullable=False),
        sa.Column("record_key", sa.Text(), nullable=True),
        sa.Column("line", sa.Integer(), nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.Column("reasons", sa.Text(), nullable=False),  # JSON [{line, path, message}]
        sa.Column("created_at", Timestamp, nullable=False),
    )
    op.create_index("ix_quarantine_run", "quarantine", ["run_id"])

    op.create_table(
        "organisation",
        sa.Column("siret", sa.Text(), primary_key=True),
        sa.Column("siret_valid", sa.Boolean(), nullable=False),
        sa.Column("raison_sociale", sa.Text(), nullable=True),
        sa.Column("nom", sa.Text(), nullable=True),
        sa.Column("numero_activite", sa.Text(), nullable=True),  # N° DA
        sa.Column("content_hash", sa.Text(), nullable=False),
        _run_fk("first_seen_run_id", nullable=False),
        _run_fk("last_seen_run_id", nullable=False),
    )

    op.create_table(
        "formation",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("carif_formation_numero", sa.Text(), nullable=False),
        sa.Column("numero_derived", sa.Boolean(), nullable=False),
        sa.Column("lheo_version", sa.Text(), nullable=False),
        sa.Column("intitule", sa.Text(), nullable=False),
        sa.Column("main_formacode", sa.Text(), nullable=True),
        sa.Column("mandataire_siret", sa.Text(), nullable=False),
        *_lifecycle(),
        sa.UniqueConstraint("source", "carif_formation_numero", name="uq_formation_key"),
    )

    op.create_table(
        "action",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("carif_action_numero", sa.Text(), nullable=False),
        sa.Column("carif_formation_numero", sa.Text(), nullable=False),
        sa.Column("numero_derived", sa.Boolean(), nullable=False),
        sa.Column("guichet_unique", sa.Boolean(), nullable=False),
        *_lifecycle(),
        sa.UniqueConstraint("source", "carif_action_numero", name="uq_action_key"),
    )

    op.create_table(
        "kairos_session",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("carif_formation_numero", sa.Text(), nullable=False),
        sa.Column("carif_action_numero", sa.Text(), nullable=False),
        sa.Column("carif_session_numero", sa.Text(), nullable=False),
        sa.Column("session_numero_derived", sa.Boolean(), nullable=False),
        sa.Column("dispensateur_siret", sa.Text(), nullable=False),
        sa.Column("dispensateur_siret_valid", sa.Boolean(), nullable=False),
        sa.Column("dispensateur_raison_sociale", sa.Text(), nullable=True),
        sa.Column("mandataire_siret", sa.Text(), nullable=False),
        sa.Column("mandataire_siret_valid", sa.Boolean(), nullable=False),
        sa.Column("mandataire_raison_sociale", sa.Text(), nullable=True),
        sa.Column("mandataire_numero_activite", sa.Text(), nullable=True),
        # single | co_contracting | guichet_unique | detached_place
        sa.Column("split_reason", sa.Text(), nullable=False),
        sa.Column("lheo_version", sa.Text(), nullable=False),
        # Screen 1: formation.
        sa.Column("intitule", sa.Text(), nullable=False),
        sa.Column("main_formacode", sa.Text(), nullable=True),
        sa.Column("formacodes", sa.Text(), nullable=True),
        sa.Column("objectif_general", sa.Integer(), nullable=True),
        sa.Column("objectif", sa.Text(), nullable=True),
        sa.Column("resultats_attendus", sa.Text(), nullable=True),
        sa.Column("contenu", sa.Text(), nullable=True),
        # Screen 2: session.
        sa.Column("duration_hours", sa.Integer(), nullable=True),
        sa.Column("hours_centre", sa.Integer(), nullable=True),
        sa.Column("hours_entreprise", sa.Integer(), nullable=True),
        sa.Column("rythme", sa.Text(), nullable=True),
        sa.Column("modalites_entrees_sorties", sa.Integer(), nullable=True),
        sa.Column("recruitment_text", sa.Text(), nullable=True),
        sa.Column("etat_recrutement", sa.Integer(), nullable=True),
        sa.Column("debut", sa.Date(), nullable=True),  # first day of the LHEO debut
        sa.Column("debut_raw", sa.Text(), nullable=True),
        sa.Column("debut_precision", sa.Text(), nullable=True),
        sa.Column("fin", sa.Date(), nullable=True),  # last day of the LHEO fin
        sa.Column("fin_raw", sa.Text(), nullable=True),
        sa.Column("fin_precision", sa.Text(), nullable=True),
        # Screen 3: place of training.
        sa.Column("place_name", sa.Text(), nullable=True),
        sa.Column("place_address_lines", sa.Text(), nullable=True),
        sa.Column("place_postal_code", sa.Text(), nullable=True),
        sa.Column("place_city", sa.Text(), nullable=True),
        sa.Column("place_departement", sa.Text(), nullable=True),
        sa.Column("places_json", sa.Text(), nullable=False),
        # Screen 4: funding.
        sa.Column("funders_json", sa.Text(), nullable=False),
        sa.Column("funded_places_total", sa.Integer(), nullable=True),
        *_lifecycle(),
        sa.UniqueConstraint(
            "source", "carif_session_numero", "dispensateur_siret", name="uq_kairos_session_key"
        ),
    )
    op.create_index("ix_kairos_session_last_seen", "kairos_session", ["last_seen_run_id"])
    op.create_index("ix_kairos_session_closed_run", "kairos_session", ["closed_run_id"])
    op.create_index("ix_kairos_session_action", "kairos_session", ["source", "carif_action_numero"])
    op.create_index("ix_kairos_session_dispensateur", "kairos_session", ["dispensateur_siret"])

    op.create_table(
        "recruitment_slot",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("kairos_session_id", BigId, sa.ForeignKey("kairos_session.id"), nullable=False),
        sa.Column("origin", sa.Text(), nullable=False),  # lheo | kairos
        sa.Column("slot_key", sa.Text(), nullable=False),
        sa.Column("modality", sa.Text(), nullable=False),  # ico | rdvi | candidature | other
        sa.Column("modality_code", sa.Integer(), nullable=True),
        sa.Column("starts_on", sa.Date(), nullable=True),
        sa.Column("ends_on", sa.Date(), nullable=True),
        sa.Column("starts_raw", sa.Text(), nullable=True),
        sa.Column("ends_raw", sa.Text(), nullable=True),
        sa.Column("start_time", sa.Text(), nullable=True),
        sa.Column("end_time", sa.Text(), nullable=True),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column("address_lines", sa.Text(), nullable=True),
        sa.Column("postal_code", sa.Text(), nullable=True),
        sa.Column("city", sa.Text(), nullable=True),
        sa.Column("remote", sa.Boolean(), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        *_lifecycle(),
        sa.UniqueConstraint(
            "kairos_session_id", "origin", "slot_key", name="uq_recruitment_slot_key"
        ),
    )
    op.create_index("ix_recruitment_slot_last_seen", "recruitment_slot", ["last_seen_run_id"])
    op.create_index("ix_recruitment_slot_closed_run", "recruitment_slot", ["closed_run_id"])

    _version_table("kairos_session_version", "kairos_session", "kairos_session_id")
    _version_table("recruitment_slot_version", "recruitment_slot", "recruitment_slot_id")


def downgrade() -> None:
    for table in (
        "recruitment_slot_version",
        "kairos_session_version",
        "recruitment_slot",
        "kairos_session",
        "action",
        "formation",
        "organisation",
        "quarantine",
        "run_ledger",
    ):
        op.drop_table(table)
