"""Loading KAIROS / France Travail exports into the database: the entry point, and the
adherents (KAIROS accounts) loader.

One call = one run: a `run_ledger` row (run_kind 'adherents', 'training-plans',
'appointments' or 'modalities') is opened first and committed on its own, so a refused
file still leaves a 'failed' row with the reason; the data of the file is then written in
one transaction.
Bad lines go to `quarantine` (file, line, column, reason; the candidate appears only as a
pseudonym) while the rest of the file loads. Re-ingesting a file changes nothing and the
ledger says 'noop'.

The kinds' own loaders: training_plans.py, appointments.py, modalities.py; the enrolments
both of the first two write, a batch of lines at a time: enrolments.py; what they share
(counts, quarantine, session links): run.py.

Personal data never leaves the loaders: names, e-mails and phones are not read into any
variable that is written or logged, and candidate identifiers are turned into keyed
pseudonyms (pseudonym.py) as soon as a line is parsed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal, get_args

import sqlalchemy as sa

from core.db import get_engine, require_current_schema
from core.history import (
    fail_run,
    finish_run,
    mark_interrupted_runs,
    run_lock,
    start_run,
)
from pipelines.kairos_exports import contracts as c
from pipelines.kairos_exports import modalities
from pipelines.kairos_exports.appointments import load_appointments
from pipelines.kairos_exports.enrolments import BATCH_LINES
from pipelines.kairos_exports.modalities import load_modalities
from pipelines.kairos_exports.pseudonym import Pseudonymiser, load_key
from pipelines.kairos_exports.reading import (
    BadLine,
    ExportFileError,
    ExportTable,
    Record,
    file_sha256,
    open_export,
)
from pipelines.kairos_exports.run import LineErrors, Run, content_hash, now
from pipelines.kairos_exports.tables import reflect_tables
from pipelines.kairos_exports.training_plans import load_training_plans
from pipelines.kairos_exports.values import parse_date, parse_siret

log = logging.getLogger(__name__)

ExportKind = Literal["adherents", "training-plans", "appointments", "modalities"]
EXPORT_KINDS: tuple[str, ...] = get_args(ExportKind)
DEFAULT_SOURCES: Mapping[str, str] = {
    "adherents": "kairos",
    "training-plans": "france_travail",
    "appointments": "kairos",
    "modalities": "kairos",
}


@dataclass
class IngestResult:
    """What one ingestion did; `counts` is also stored in run_ledger.counts_json."""

    run_id: int
    kind: str
    file: str
    status: str  # 'succeeded' | 'noop' ('failed' raises instead)
    encoding: str
    separator: str
    counts: dict[str, int]


# -- entry point ---------------------------------------------------------------------------


def ingest_export(
    path: Path | str,
    *,
    kind: ExportKind,
    db_url: str | None,
    pseudonym_key: bytes | None = None,
    source: str | None = None,
    as_of: date | None = None,
    lock_timeout: float = 600.0,
    covers: Sequence[str] | None = None,
    batch_lines: int = BATCH_LINES,
) -> IngestResult:
    """Load one KAIROS / France Travail export of `kind` into the database at `db_url`.

    `as_of` (default: today) dates the 'inscrit' status a training plan asserts when its
    start date is later, and the day a modalities export was seen; `covers` names the CARIF
    sources a modalities export covers (default: those of the sessions it lists;
    pipelines/kairos_exports/modalities.py). `batch_lines`: enrolment lines confronted and
    written together (enrolments.py; the outcome does not depend on it). Raises
    `ExportFileError` (file refused whole, ledger 'failed'),
    `PseudonymKeyError` (no key for a kind that carries candidates), `RunLockTimeout`
    (another ingestion of the same kind and source ran longer than `lock_timeout`). Runs
    of one kind and source are serialised; a run killed before recording its end is
    marked failed ('interrupted') by the next one.
    """
    if kind not in EXPORT_KINDS:
        raise ValueError(f"unknown export kind {kind!r} (expected one of {EXPORT_KINDS})")
    file_path = Path(path)
    source = source or DEFAULT_SOURCES[kind]
    engine = get_engine(db_url)
    try:
        require_current_schema(engine)
        tables = reflect_tables(engine, list(_TABLES))
        with run_lock(engine, run_kind=kind, source=source, timeout=lock_timeout) as lock:
            run_id = start_run(
                engine,
                run_kind=kind,
                source=source,
                snapshot_file=file_path.name,
                snapshot_sha256=file_sha256(file_path),
            )
            # We hold the lock: another 'running' row of this kind and source is dead.
            mark_interrupted_runs(engine, run_kind=kind, source=source, current_run_id=run_id)
            try:
                pseudonymiser = (
                    None
                    if kind in ("adherents", "modalities")
                    else Pseudonymiser(load_key(pseudonym_key))
                )
                table = _open_table(file_path, kind)
                with engine.begin() as conn:
                    run = Run(conn, tables, run_id, kind, source, file_path.name)
                    try:
                        if kind == "adherents":
                            _load_adherents(run, table)
                        elif kind == "modalities":
                            load_modalities(
                                run,
                                _records(run, table),
                                covers=covers,
                                seen_on=as_of or date.today(),
                            )
                        elif kind == "training-plans":
                            assert pseudonymiser is not None
                            load_training_plans(
                                run,
                                _records(run, table),
                                pseudonymiser,
                                as_of or date.today(),
                                batch_lines,
                            )
                        else:
                            assert pseudonymiser is not None
                            load_appointments(run, _records(run, table), pseudonymiser, batch_lines)
                        run.flush()
                    except BaseException:
                        # No write may be in flight when the transaction rolls back.
                        run.wait_writes(failing=True)
                        raise
                    changed = sum(run.counts.get(k, 0) for k in _CHANGE_COUNTS)
                    status = "succeeded" if changed else "noop"
                    finish_run(
                        conn,
                        run_id,
                        status=status,
                        counts={k: run.counts.get(k, 0) for k in _LEDGER_COLUMNS},
                        extra_counts=run.counts,
                    )
                    # Before the commit: a run whose lock died may have overlapped another.
                    lock.assert_held()
            except Exception as exc:
                fail_run(engine, run_id, _safe_error(exc))
                log.error(
                    "kairos %s ingest of %s failed: %s", kind, file_path.name, _safe_error(exc)
                )
                raise
            log.info(
                "kairos %s ingest of %s: %s %s",
                kind,
                file_path.name,
                status,
                json.dumps(run.counts, sort_keys=True),
            )
            return IngestResult(
                run_id, kind, str(file_path), status, table.encoding, table.separator, run.counts
            )
    finally:
        engine.dispose()


# run_ledger's own count columns that this loader fills (the rest go to counts_json).
_LEDGER_COLUMNS = ("slots_inserted", "slots_updated", "slots_closed")
# Counts that mean the database changed; anything else is bookkeeping.
_CHANGE_COUNTS = (
    "inserted",
    "updated",
    "events",
    "slots_inserted",
    "slots_updated",
    "slots_closed",
)


def _safe_error(exc: BaseException) -> str:
    """The message stored in the ledger and logged. Our own errors are written to be safe;
    for others (driver errors print bound parameters) only the class is kept, as those
    parameters can hold free text from the file."""
    if isinstance(exc, ExportFileError | ValueError) or type(exc).__module__.startswith(
        "pipelines."
    ):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__} (details withheld: may contain file content)"


def _open_table(path: Path, kind: str) -> ExportTable:
    if kind == "adherents":
        return open_export(path, required=c.REQUIRED_ADHERENTS)
    if kind == "training-plans":
        return open_export(
            path, required=c.REQUIRED_TRAINING_PLANS, aliases=c.TRAINING_PLAN_ALIASES
        )
    if kind == "modalities":
        return open_export(path, required=modalities.REQUIRED, aliases=modalities.ALIASES)
    return open_export(path, required=c.REQUIRED_APPOINTMENTS, aliases=c.APPOINTMENT_ALIASES)


_TABLES = (
    "kairos_export_coverage",
    "kairos_modality_unmatched",
    "run_ledger",
    "quarantine",
    "kairos_session",
    "recruitment_slot",
    "kairos_adherent",
    "enrolment",
    "enrolment_event",
)


def _records(run: Run, table: ExportTable) -> Iterable[Record]:
    """Records of the file; ragged lines are quarantined on the way."""
    for item in table.records():
        run.count("lines_read")
        if isinstance(item, BadLine):
            reason = {"line": item.line, "path": item.column, "message": item.message}
            run.quarantine(item.line, [reason])
            continue
        yield item


# -- adherents -----------------------------------------------------------------------------


def _load_adherents(run: Run, table: ExportTable) -> None:
    """One row per (SIRET, convention, start): the account and its convention period.

    The RGC's name, e-mail and phone (PERSONAL_ADHERENTS) are never read.
    """
    t = run.tables["kairos_adherent"]
    existing = {
        row.adherent_key: (row.id, row.content_hash)
        for row in run.conn.execute(sa.select(t.c.id, t.c.adherent_key, t.c.content_hash))
    }
    seen_in_file: dict[str, tuple[int, str]] = {}
    for record in _records(run, table):
        errors = LineErrors(record.line)
        siret = errors.parse("SIRET", parse_siret, record.get("siret"))
        if siret is None and not errors:
            errors.add("SIRET", "SIRET is blank")
        start = errors.parse("date début", parse_date, record.get("date_debut"))
        end = errors.parse("date fin", parse_date, record.get("date_fin"))
        if start and end and start > end:
            errors.add("date fin", f"convention ends ({end}) before it starts ({start})")
        convention = record.get("convention") or None
        key = f"{siret}|{convention or ''}|{start.isoformat() if start else ''}"
        if errors:
            run.quarantine(record.line, errors.reasons, siret)
            continue
        values = {
            "siret": siret,
            "libelle": record.get("libelle") or None,
            "region": record.get("region") or None,
            "nouvelle_region": record.get("nouvelle_region") or None,
            "assedic": record.get("assedic") or None,
            "convention": convention,
            "convention_start": start,
            "convention_end": end,
        }
        digest = content_hash(values)
        if key in seen_in_file:
            first_line, first_hash = seen_in_file[key]
            if first_hash != digest:
                errors.add(
                    "SIRET", f"same account and convention as line {first_line}, different content"
                )
                run.quarantine(record.line, errors.reasons, siret)
            else:
                run.count("duplicates")
            continue
        seen_in_file[key] = (record.line, digest)
        at = now()
        if key not in existing:
            result = run.conn.execute(
                t.insert().returning(t.c.id),
                {
                    **values,
                    "adherent_key": key,
                    "content_hash": digest,
                    "first_seen_run_id": run.run_id,
                    "last_seen_run_id": run.run_id,
                    "created_at": at,
                    "updated_at": at,
                },
            )
            existing[key] = (int(result.scalar_one()), digest)
            run.count("inserted")
        elif existing[key][1] != digest:
            run.conn.execute(
                t.update()
                .where(t.c.id == existing[key][0])
                .values(**values, content_hash=digest, last_seen_run_id=run.run_id, updated_at=at)
            )
            run.count("updated")
        else:
            # Unchanged rows are not rewritten (history convention, core/history.py).
            run.count("unchanged")
