"""KAIROS and France Travail exports: adherent accounts, training plans,
appointment and candidature lists → `kairos_adherent`, `enrolment`, `enrolment_event`
and KAIROS-origin `recruitment_slot` rows, with candidates pseudonymised.

See docs/kairos-exports.md for the formats, the lifecycle and the privacy rules.
"""

from __future__ import annotations

from pipelines.kairos_exports.ingest import EXPORT_KINDS, ExportKind, IngestResult, ingest_export
from pipelines.kairos_exports.pseudonym import PseudonymKeyError
from pipelines.kairos_exports.queries import export_enrolments
from pipelines.kairos_exports.reading import (
    ExportFileError,
    MalformedFileError,
    MissingColumnError,
    UndecodableFileError,
)

__all__ = [
    "EXPORT_KINDS",
    "ExportFileError",
    "ExportKind",
    "IngestResult",
    "MalformedFileError",
    "MissingColumnError",
    "PseudonymKeyError",
    "UndecodableFileError",
    "export_enrolments",
    "ingest_export",
]
