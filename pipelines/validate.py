"""Validate an LHEO file without loading it: counts and one entry per rejected record."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from transforms.reader import OfferReader
from transforms.records import QuarantinedRecord


@dataclass
class ValidationReport:
    file: str
    lheo_version: str
    formations: int = 0
    valid: int = 0
    quarantined: list[QuarantinedRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "lheo_version": self.lheo_version,
            "formations": self.formations,
            "valid": self.valid,
            "quarantined": [
                {
                    "numero": q.numero,
                    "line": q.line,
                    "path": q.path,
                    "message": q.message,
                    "reasons": [asdict(r) for r in q.reasons],
                }
                for q in self.quarantined
            ],
        }

    def to_text(self) -> str:
        lines = [
            f"{self.file}: LHEO {self.lheo_version}, {self.formations} formations, "
            f"{self.valid} valid, {len(self.quarantined)} quarantined"
        ]
        for q in self.quarantined:
            first = q.reasons[0] if q.reasons else None
            more = f" (+{len(q.reasons) - 1} more)" if len(q.reasons) > 1 else ""
            where = f"line {first.line}: {first.path}" if first else f"line {q.line}"
            message = first.message if first else "rejected"
            lines.append(f"  formation {q.numero or '(no numero)'}, {where}: {message}{more}")
        return "\n".join(lines)


def validate_offers(path: str | os.PathLike[str], source: str | None = None) -> ValidationReport:
    """Read and validate every formation; raises DocumentError on a whole-document failure."""
    with OfferReader(path, source) as reader:
        report = ValidationReport(file=os.fspath(path), lheo_version=reader.lheo_version)
        for item in reader:
            if isinstance(item, QuarantinedRecord):
                report.quarantined.append(item)
        report.formations = reader.counts["formations"]
        report.valid = reader.counts["valid"]
    return report
