"""The main job on the embedded default (`make run`): sample offers end to end.

Generates the sample sources' offers (the project's own generator, fixed seeds), then
validates them, and prints where every output is. Later stages (load, checks, report)
are chained here as they exist, on the SQLite file under var/.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipelines.validate import ValidationReport, validate_offers
from transforms.generator import write_offers

# (source name, LHEO version, formations, seed): one SMF-style and one SIGMA-style source.
SAMPLE_SOURCES: tuple[tuple[str, str, int, int], ...] = (
    ("smf-normandie", "2.2", 150, 14),
    ("sigma-occitanie", "2.3", 150, 31),
)


@dataclass
class DemoResult:
    workdir: Path
    snapshots: dict[str, Path] = field(default_factory=dict)
    validations: dict[str, ValidationReport] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"Sample run in {self.workdir}"]
        for source, path in self.snapshots.items():
            report = self.validations[source]
            lines.append(
                f"  {source}: {path} — LHEO {report.lheo_version}, {report.formations} "
                f"formations, {report.valid} valid, {len(report.quarantined)} quarantined"
            )
        return "\n".join(lines)


def run_demo(workdir: Path, invalid_rate: float = 0.02) -> DemoResult:
    result = DemoResult(workdir=workdir.resolve())
    for source, version, formations, seed in SAMPLE_SOURCES:
        folder = result.workdir / "samples" / source
        folder.mkdir(parents=True, exist_ok=True)
        snapshot = folder / f"offres-{source}.xml"
        write_offers(
            snapshot,
            formations=formations,
            seed=seed,
            lheo_version=version,
            invalid_rate=invalid_rate,
        )
        result.snapshots[source] = snapshot
        result.validations[source] = validate_offers(snapshot, source)
    return result
