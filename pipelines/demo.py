"""The main job on the embedded default (`make run`): sample offers end to end.

Generate the snapshots → validate, map and load them (bad records to quarantine) →
ingest a KAIROS adherent list and a KAIROS modalities export → check → report, on the
SQLite file under var/ (or `--db`). The sample offers are the project's own generator
output (fixed seeds, dated around today so the checks have something to say); the sample
adherent list gives most, not all, dispensateurs a KAIROS account; the sample modalities
export covers one source only (SIGMA's), so the report shows both "bloquée" (KAIROS
checked) and "KAIROS non vérifié". Re-running the job is safe: an unchanged snapshot is a
no-op in the ledger.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text

from core.db import get_engine, migrate
from pipelines.kairos_exports import ingest_export
from pipelines.load import LedgerEntry, load_snapshot
from quality_checks.report import WrittenReport, build_report
from samples.generator import write_offers

# (source name, LHEO version, formations, seed): one SMF-style and one SIGMA-style source,
# as configured in config/sources.yaml.
SAMPLE_SOURCES: tuple[tuple[str, str, int, int], ...] = (
    ("smf-normandie", "2.2", 150, 14),
    ("sigma-occitanie", "2.3", 150, 31),
)
# The source whose KAIROS modalities the sample export lists (config/sources.yaml).
MODALITIES_SOURCE = "sigma-occitanie"
MODALITIES_HEADER = (
    "dc_numeroicsession|dc_siretformateur|type_modalite|date_debut|date_fin|nb_places|statut"
)
ADHERENTS_HEADER = (
    "SIRET|LIBELLE|REGION|Nouvelle région|Nom RGC|Prénom RGC|mail RGC|Téléphone RGC|"
    "ASSEDIC|convention|date début|date fin"
)


@dataclass
class DemoResult:
    workdir: Path
    db_url: str
    as_of: dt.date
    snapshots: dict[str, Path] = field(default_factory=dict)
    loads: dict[str, LedgerEntry] = field(default_factory=dict)
    adherents_file: Path | None = None
    modalities_file: Path | None = None
    report: WrittenReport | None = None

    def summary(self) -> str:
        lines = [f"Sample run as of {self.as_of} in {self.workdir}", f"  database: {self.db_url}"]
        for source, path in self.snapshots.items():
            load = self.loads[source]
            lines.append(
                f"  {source}: {path} — LHEO {load.lheo_version}, {load.formations_read} "
                f"formations, {load.formations_valid} valid, {load.formations_quarantined} "
                "quarantined"
            )
            lines.append(
                f"    load run {load.run_id} {load.status}: sessions +{load.sessions_inserted} "
                f"~{load.sessions_updated} ={load.sessions_unchanged} -{load.sessions_closed}, "
                f"slots +{load.slots_inserted} ~{load.slots_updated} -{load.slots_closed}"
            )
        if self.adherents_file is not None:
            lines.append(f"  KAIROS adherents (sample): {self.adherents_file}")
        if self.modalities_file is not None:
            lines.append(
                f"  KAIROS modalities (sample, {MODALITIES_SOURCE} only): {self.modalities_file}"
            )
        if self.report is not None:
            lines.append(f"  report (open in a browser): {self.report.html_path}")
            lines.append(f"  flags CSV: {self.report.csv_path}")
        return "\n".join(lines)


def write_sample_adherents(db_url: str, target: Path, as_of: dt.date) -> Path:
    """A KAIROS adherent list covering 9 dispensateurs out of 10 (the 10th has no account).

    The account-manager columns hold obviously fake values: the loader never stores them.
    """
    with get_engine(db_url).connect() as conn:
        sirets = sorted(
            row[0]
            for row in conn.execute(
                text("SELECT DISTINCT dispensateur_siret FROM kairos_session ORDER BY 1")
            )
        )
    start = (as_of - dt.timedelta(days=400)).strftime("%d/%m/%Y")
    end = (as_of + dt.timedelta(days=330)).strftime("%d/%m/%Y")
    lines = [ADHERENTS_HEADER]
    for rank, siret in enumerate(sirets):
        if rank % 10 == 9:
            continue
        lines.append(
            f"{siret}|OF {siret[:9]}|28|NORMANDIE|Exemple|Agent|agent@example.invalid|"
            f"0000000000|ASSEDIC|CONV-{rank:05d}|{start}|{end}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def write_sample_modalities(db_url: str, target: Path, as_of: dt.date) -> Path:
    """A KAIROS modalities export for MODALITIES_SOURCE: an open RDVI range for two sessions
    out of three, and a closed candidature window for one in seven — what the OFs entered
    in KAIROS, which the offer cannot show."""
    with get_engine(db_url).connect() as conn:
        sessions = conn.execute(
            text(
                "SELECT carif_session_numero, dispensateur_siret FROM kairos_session"
                " WHERE source = :source AND closed_at IS NULL ORDER BY id"
            ),
            {"source": MODALITIES_SOURCE},
        ).all()
    start = (as_of - dt.timedelta(days=5)).strftime("%d/%m/%Y")
    end = (as_of + dt.timedelta(days=30)).strftime("%d/%m/%Y")
    lines = [MODALITIES_HEADER]
    for rank, (numero, siret) in enumerate(sessions):
        if rank % 3 != 2:
            lines.append(f"{numero}|{siret}|RDVI|{start}|{end}|8|OUVERT")
        if rank % 7 == 0:
            lines.append(f"{numero}|{siret}|CANDIDATURE|{start}|{end}|20|FERME")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def run_demo(
    workdir: Path,
    *,
    db_url: str | None = None,
    as_of: dt.date | None = None,
    invalid_rate: float = 0.02,
) -> DemoResult:
    workdir = workdir.resolve()
    as_of = as_of or dt.date.today()
    db_url = db_url or f"sqlite:///{workdir / 'kairos.sqlite'}"
    workdir.mkdir(parents=True, exist_ok=True)
    migrate(get_engine(db_url))
    result = DemoResult(workdir=workdir, db_url=db_url, as_of=as_of)
    for source, version, formations, seed in SAMPLE_SOURCES:
        folder = workdir / "samples" / source
        folder.mkdir(parents=True, exist_ok=True)
        snapshot = folder / f"offres-{source}.xml"
        write_offers(
            snapshot,
            formations=formations,
            seed=seed,
            lheo_version=version,
            invalid_rate=invalid_rate,
            reference_date=as_of,
        )
        result.snapshots[source] = snapshot
        result.loads[source] = load_snapshot(snapshot, source=source, db_url=db_url)
    result.adherents_file = write_sample_adherents(
        db_url, workdir / "samples" / "kairos" / "adherents.csv", as_of
    )
    ingest_export(result.adherents_file, kind="adherents", db_url=db_url)
    result.modalities_file = write_sample_modalities(
        db_url, workdir / "samples" / "kairos" / "modalites.csv", as_of
    )
    ingest_export(
        result.modalities_file,
        kind="modalities",
        db_url=db_url,
        as_of=as_of,
        covers=[MODALITIES_SOURCE],
    )
    result.report = build_report(db_url, as_of, workdir / "report")
    return result
