"""Loading KAIROS / France Travail exports into the database (issue 4).

One call = one run: a `run_ledger` row (run_kind 'adherents', 'training-plans' or
'appointments') is opened first and committed on its own, so a refused file still leaves
a 'failed' row with the reason; the data of the file is then written in one transaction.
Bad lines go to `quarantine` (file, line, column, reason; the candidate appears only as a
pseudonym) while the rest of the file loads. Re-ingesting a file changes nothing and the
ledger says 'noop'.

Personal data never leaves this module: names, e-mails and phones are not read into any
variable that is written or logged, and candidate identifiers are turned into keyed
pseudonyms (pseudonym.py) as soon as a line is parsed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from pipelines.db import get_engine, migrate
from pipelines.history import (
    fail_run,
    finish_run,
    mark_interrupted_runs,
    run_lock,
    start_run,
    utcnow,
)
from pipelines.kairos_exports import contracts as c
from pipelines.kairos_exports import modalities, slots
from pipelines.kairos_exports.lifecycle import (
    CurrentState,
    Plan,
    Status,
    Step,
    date_steps,
    plan_steps,
)
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
from pipelines.kairos_exports.tables import reflect_tables
from pipelines.kairos_exports.values import (
    choice,
    parse_count,
    parse_date,
    parse_financeurs,
    parse_flag,
    parse_siret,
    parse_time,
    siret_is_valid,
    siret_problem,
    siret_text,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

ExportKind = Literal["adherents", "training-plans", "appointments", "modalities"]
EXPORT_KINDS: tuple[str, ...] = get_args(ExportKind)
RECORD_KINDS: Mapping[str, str] = {
    "adherents": "adherent",
    "training-plans": "training_plan",
    "appointments": "appointment",
    "modalities": "modality",
}
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


def _now() -> datetime:
    return utcnow()


def _hash(values: Mapping[str, Any]) -> str:
    payload = json.dumps(values, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class LineErrors:
    """Reasons collected for one line; each names the column (`path`)."""

    def __init__(self, line: int) -> None:
        self.line = line
        self.reasons: list[dict[str, Any]] = []

    def add(self, path: str, message: str) -> None:
        self.reasons.append({"line": self.line, "path": path, "message": message})

    def parse(self, path: str, parser: Callable[[str], T | None], raw: str) -> T | None:
        """`parser(raw)`; a ValueError becomes a reason for `path` and the value None."""
        try:
            return parser(raw)
        except ValueError as exc:
            self.add(path, str(exc))
            return None

    def __bool__(self) -> bool:
        return bool(self.reasons)


@dataclass
class Run:
    """State shared by the loaders during one run."""

    conn: Connection
    tables: Mapping[str, sa.Table]
    run_id: int
    kind: str
    source: str
    file: str
    counts: dict[str, int] = field(default_factory=dict)
    _sessions: dict[tuple[str, str], list[sa.Row[Any]]] = field(default_factory=dict)

    def count(self, name: str, by: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + by

    def quarantine(
        self, line: int, reasons: list[dict[str, Any]], record_key: str | None = None
    ) -> None:
        """One quarantine row per rejected line; `path` is the first offending column."""
        self.conn.execute(
            self.tables["quarantine"].insert(),
            {
                "run_id": self.run_id,
                "source": self.source,
                "file": self.file,
                "record_kind": RECORD_KINDS[self.kind],
                "record_key": record_key,
                "line": line,
                "path": reasons[0]["path"],
                "reasons": json.dumps(reasons, ensure_ascii=False),
                "created_at": _now(),
            },
        )
        self.count("quarantined")

    def sessions(self, carif_session: str, siret: str) -> list[sa.Row[Any]]:
        """KAIROS sessions for (CARIF session number, dispensateur SIRET), any source."""
        key = (carif_session, siret)
        if key not in self._sessions:
            t = self.tables["kairos_session"]
            query = (
                sa.select(t.c.id, t.c.source, t.c.dispensateur_siret, t.c.carif_action_numero)
                .where(t.c.carif_session_numero == carif_session)
                .where(t.c.dispensateur_siret == siret)
                # Open sessions first: a closed one only when nothing else matches.
                .order_by(t.c.closed_at.is_not(None), t.c.id)
            )
            self._sessions[key] = list(self.conn.execute(query))
        return self._sessions[key]


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
) -> IngestResult:
    """Load one KAIROS / France Travail export of `kind` into the database at `db_url`.

    `as_of` (default: today) dates the 'inscrit' status a training plan asserts when its
    start date is later, and the day a modalities export was seen; `covers` names the CARIF
    sources a modalities export covers (default: those of the sessions it lists;
    pipelines/kairos_exports/modalities.py). Raises `ExportFileError` (file refused whole,
    ledger 'failed'),
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
        migrate(engine)
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
                    if kind == "adherents":
                        _load_adherents(run, table)
                    elif kind == "modalities":
                        load_modalities(
                            run, _records(run, table), covers=covers, seen_on=as_of or date.today()
                        )
                    elif kind == "training-plans":
                        assert pseudonymiser is not None
                        _load_training_plans(run, table, pseudonymiser, as_of or date.today())
                    else:
                        assert pseudonymiser is not None
                        _load_appointments(run, table, pseudonymiser)
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
        content_hash = _hash(values)
        if key in seen_in_file:
            first_line, first_hash = seen_in_file[key]
            if first_hash != content_hash:
                errors.add(
                    "SIRET", f"same account and convention as line {first_line}, different content"
                )
                run.quarantine(record.line, errors.reasons, siret)
            else:
                run.count("duplicates")
            continue
        seen_in_file[key] = (record.line, content_hash)
        now = _now()
        if key not in existing:
            result = run.conn.execute(
                t.insert().returning(t.c.id),
                {
                    **values,
                    "adherent_key": key,
                    "content_hash": content_hash,
                    "first_seen_run_id": run.run_id,
                    "last_seen_run_id": run.run_id,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            existing[key] = (int(result.scalar_one()), content_hash)
            run.count("inserted")
        elif existing[key][1] != content_hash:
            run.conn.execute(
                t.update()
                .where(t.c.id == existing[key][0])
                .values(
                    **values, content_hash=content_hash, last_seen_run_id=run.run_id, updated_at=now
                )
            )
            run.count("updated")
        else:
            # Unchanged rows are not rewritten (history convention, pipelines/history.py).
            run.count("unchanged")


# -- enrolments: shared by training plans and appointments ----------------------------------


@dataclass
class Candidate:
    """Pseudonyms of one candidate; `primary` keys the enrolment."""

    local: str | None
    national: str | None

    @property
    def primary(self) -> str:
        value = self.local or self.national
        assert value is not None
        return value


@dataclass
class EnrolmentState:
    """An enrolment as the run knows it: row id, current state, next event number."""

    id: int
    state: CurrentState
    next_seq: int
    content_hash: str


class Enrolments:
    """Finds, creates and advances enrolments; keeps their state across the lines of a run."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.t = run.tables["enrolment"]
        self.events = run.tables["enrolment_event"]
        self._cache: dict[int, EnrolmentState] = {}

    def find(self, session_key: str, sirets: Iterable[str], who: Candidate) -> sa.Row[Any] | None:
        t = self.t
        same_person = []
        if who.local:
            same_person.append(t.c.candidate_local == who.local)
        if who.national:
            same_person.append(t.c.candidate_national == who.national)
        query = (
            sa.select(t)
            .where(t.c.session_key == session_key)
            .where(t.c.dispensateur_siret.in_(sorted(set(sirets))))
            .where(sa.or_(*same_person))
            .order_by(t.c.id)
            .limit(1)
        )
        return self.run.conn.execute(query).first()

    def state(self, row: sa.Row[Any]) -> EnrolmentState:
        if row.id not in self._cache:
            history = self.run.conn.execute(
                sa.select(self.events.c.status, self.events.c.event_date, self.events.c.slot_key)
                .where(self.events.c.enrolment_id == row.id)
                .order_by(self.events.c.seq)
            ).all()
            next_seq = len(history) + 1
            self._cache[row.id] = EnrolmentState(
                row.id,
                CurrentState(
                    Status(row.current_status),
                    row.status_date,
                    row.current_slot_key,
                    frozenset((h.status, h.event_date, h.slot_key) for h in history),
                ),
                next_seq,
                row.content_hash,
            )
        return self._cache[row.id]

    def apply(
        self,
        *,
        record: Record,
        record_key: str,
        session_key: str,
        sirets: Iterable[str],
        who: Candidate,
        steps: tuple[Step, ...],
        values: dict[str, Any],
        slot_ids: Mapping[str, int],
    ) -> None:
        """Confront `steps` with the enrolment and write what is new, or quarantine.

        `values` are the descriptive columns this line knows (None = unknown: an existing
        value is kept, so one source never erases what the other brought).
        """
        run = self.run
        row = self.find(session_key, sirets, who)
        current = self.state(row) if row is not None else None
        plan: Plan = plan_steps(current.state if current else None, steps)
        if plan.rejection:
            run.quarantine(
                record.line,
                [{"line": record.line, "path": "status", "message": plan.rejection}],
                record_key,
            )
            return
        now = _now()
        if row is None:
            last = plan.new_steps[-1]
            columns = {
                **values,
                "enrolment_key": f"{session_key}|{values['dispensateur_siret']}|{who.primary}",
                "candidate": who.primary,
                "candidate_local": who.local,
                "candidate_national": who.national,
                "session_key": session_key,
                "first_source": run.kind,
                "last_source": run.kind,
                "current_status": last.status.value,
                "status_date": last.on,
                "current_slot_key": _last_slot(plan.new_steps, None),
                **_path_dates(plan.new_steps, {}),
                "first_seen_run_id": run.run_id,
                "last_seen_run_id": run.run_id,
                "created_at": now,
                "updated_at": now,
            }
            columns["content_hash"] = _hash(_descriptive(columns))
            enrolment_id = int(
                run.conn.execute(self.t.insert().returning(self.t.c.id), columns).scalar_one()
            )
            current = EnrolmentState(
                enrolment_id,
                CurrentState(last.status, last.on, columns["current_slot_key"], frozenset()),
                1,
                columns["content_hash"],
            )
            self._cache[enrolment_id] = current
            self._write_events(current, None, plan.new_steps, record, slot_ids)
            run.count("inserted")
            run.count("loaded")
            return
        assert current is not None
        merged = dict(row._mapping)
        for key, value in values.items():
            if value is not None:
                merged[key] = value
        merged["candidate_local"] = row.candidate_local or who.local
        merged["candidate_national"] = row.candidate_national or who.national
        new_hash = _hash(_descriptive(merged))
        changes: dict[str, Any] = {}
        if new_hash != current.content_hash:
            changes = {k: merged[k] for k in _descriptive(merged)}
            changes["content_hash"] = new_hash
            current.content_hash = new_hash
        if plan.new_steps:
            previous = current.state.status
            self._write_events(current, previous, plan.new_steps, record, slot_ids)
            last = plan.new_steps[-1]
            changes.update(
                current_status=last.status.value,
                status_date=last.on,
                current_slot_key=_last_slot(plan.new_steps, row.current_slot_key),
                **_path_dates(plan.new_steps, dict(row._mapping)),
            )
        if not changes:
            # Unchanged rows are not rewritten (history convention, pipelines/history.py).
            run.count("unchanged")
            return
        changes.update(last_source=run.kind, updated_at=now, last_seen_run_id=run.run_id)
        run.conn.execute(self.t.update().where(self.t.c.id == row.id).values(**changes))
        run.count("updated")
        run.count("loaded")

    def _write_events(
        self,
        current: EnrolmentState,
        previous: Status | None,
        steps: tuple[Step, ...],
        record: Record,
        slot_ids: Mapping[str, int],
    ) -> None:
        run = self.run
        history = set(current.state.history)
        slot_key = current.state.slot_key
        for step in steps:
            run.conn.execute(
                self.events.insert(),
                {
                    "enrolment_id": current.id,
                    "seq": current.next_seq,
                    "status": step.status.value,
                    "previous_status": previous.value if previous else None,
                    "event_date": step.on,
                    "slot_key": step.slot_key,
                    "recruitment_slot_id": slot_ids.get(step.slot_key or ""),
                    "source_kind": run.kind,
                    "run_id": run.run_id,
                    "source_line": record.line,
                    "recorded_at": _now(),
                },
            )
            current.next_seq += 1
            history.add((step.status.value, step.on, step.slot_key))
            previous = step.status
            if step.status is Status.POSITIONNE:
                slot_key = step.slot_key
            run.count("events")
        last = steps[-1]
        current.state = CurrentState(last.status, last.on, slot_key, frozenset(history))


_DESCRIPTIVE = (
    "candidate_local",
    "candidate_national",
    "carif_session_numero",
    "carif_action_numero",
    "ft_session_id",
    "dispensateur_siret",
    "responsable_siret",
    "kairos_session_id",
    "link_method",
    "origin",
    "modality",
    "planned_start",
    "planned_end",
    "formation_id",
    "formation_label",
    "dispositif",
    "financeurs",
    "lieu_postal_code",
    "lieu_insee",
)


def _descriptive(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: values.get(k) for k in _DESCRIPTIVE}


def _last_slot(steps: tuple[Step, ...], default: str | None) -> str | None:
    for step in reversed(steps):
        if step.status is Status.POSITIONNE:
            return step.slot_key
    return default


def _path_dates(steps: tuple[Step, ...], row: Mapping[str, Any]) -> dict[str, Any]:
    """Entry and exit dates follow the events: the first entry, the latest exit."""
    dates: dict[str, Any] = {}
    for step in steps:
        if step.status is Status.ENTRE and not (row.get("entry_date") or dates.get("entry_date")):
            dates["entry_date"] = step.on
        if step.status in (Status.SORTI, Status.ABANDON):
            dates["exit_date"] = step.on
    return dates


def _link(
    run: Run, carif_session: str | None, dispensateur: str | None, responsable: str | None
) -> tuple[int | None, str | None, str | None]:
    """(kairos_session_id, dispensateur SIRET to keep, link method).

    The dispensateur (formateur) SIRET first; else the responsable's, which is how a
    "guichet unique" programme keeps everything under the mandataire's account
    (DOMAIN.md). Several sessions (one per CARIF source) for the key: the oldest wins
    and the line is counted as ambiguous.
    """
    if carif_session:
        for siret, method in ((dispensateur, "dispensateur"), (responsable, "responsable")):
            if not siret:
                continue
            found = run.sessions(carif_session, siret)
            if found:
                if len(found) > 1:
                    run.count("ambiguous_links")
                run.count("linked")
                return int(found[0].id), str(found[0].dispensateur_siret), method
    run.count("unmatched")
    return None, dispensateur or responsable, None


# -- training plans -------------------------------------------------------------------------


def _plan_sirets(run: Run, record: Record, errors: LineErrors) -> tuple[str | None, str | None]:
    """(dispensateur, responsable) SIRETs of a training-plan line, as written.

    `NULL` and `00000000000000` mean no SIRET (real exports have both): the other column is
    used, as for a blank one (`siret_absent_placeholder` counts them). Fourteen digits
    failing the check digit are kept, not quarantined: an exact match links the line to a
    KAIROS session holding that very SIRET (whose own `*_siret_valid` flag keeps it visible
    to the SIRET check), and an unlinked line is kept as unmatched with it
    (`siret_check_failed` counts them). A value that is not fourteen digits at all (a
    shifted column, a phone number) quarantines the line, as does a line with no SIRET."""
    found: dict[str, str | None] = {}
    for column in ("dc_siretformateur", "dc_siret"):
        raw = record.get(column)
        text = siret_text(raw)
        if text is None:
            if raw:
                run.count("siret_absent_placeholder")
        elif not (len(text) == 14 and text.isdigit()):
            errors.add(column, siret_problem(text))
        elif not siret_is_valid(text):
            run.count("siret_check_failed")
        found[column] = text
    formateur, responsable = found["dc_siretformateur"], found["dc_siret"]
    if formateur is None and responsable is None and not errors:
        errors.add("dc_siretformateur", "no SIRET (dc_siretformateur, dc_siret)")
    return formateur, responsable


def _load_training_plans(
    run: Run, table: ExportTable, pseudonymiser: Pseudonymiser, as_of: date
) -> None:
    """Each line: an enrolment at least 'inscrit' (a plan exists once validated).

    The 'inscrit' event is dated the plan's start date, or `as_of` when the start is
    later: the plan existed no later than both.
    """
    enrolments = Enrolments(run)
    for record in _records(run, table):
        errors = LineErrors(record.line)
        who = Candidate(
            pseudonymiser.pseudonym("local", record.get("c_individulocal")),
            pseudonymiser.pseudonym("national", record.get("dn_individu_national")),
        )
        if not (who.local or who.national):
            errors.add(
                "c_individulocal", "no candidate identifier (c_individulocal, dn_individu_national)"
            )
        formateur, responsable = _plan_sirets(run, record, errors)
        carif_session = record.get("dc_numeroicsession") or None
        ft_session = record.get("dn_session_id") or None
        if not (carif_session or ft_session):
            errors.add(
                "dc_numeroicsession", "no session number (dc_numeroicsession, dn_session_id)"
            )
        start = errors.parse(
            "dd_datedebutplanformation",
            parse_date,
            record.get("dd_datedebutplanformation"),
        )
        end = errors.parse(
            "dd_datefinplanformation", parse_date, record.get("dd_datefinplanformation")
        )
        if start and end and start > end:
            errors.add("dd_datefinplanformation", f"plan ends ({end}) before it starts ({start})")
        session_key = carif_session or f"ft:{ft_session}"
        record_key = "|".join(
            [session_key, formateur or responsable or "", who.local or who.national or ""]
        )
        if errors:
            run.quarantine(record.line, errors.reasons, record_key)
            continue
        session_id, dispensateur, method = _link(run, carif_session, formateur, responsable)
        values = {
            "carif_session_numero": carif_session,
            "carif_action_numero": record.get("dc_numeroicaction") or None,
            "ft_session_id": ft_session,
            "dispensateur_siret": dispensateur,
            "responsable_siret": responsable,
            "kairos_session_id": session_id,
            "link_method": method,
            "planned_start": start,
            "planned_end": end,
            "formation_id": record.get("dc_formation_id") or None,
            "formation_label": record.get("dc_lblformation") or None,
            "dispositif": record.get("c_dispositifformation") or None,
            "financeurs": parse_financeurs(record.get("liste_financeur")),
            "lieu_postal_code": record.get("dc_cp_lieuformation") or None,
            "lieu_insee": record.get("dc_insee_lieuformation") or None,
        }
        registered_on = min(start, as_of) if start else as_of
        steps = (Step(Status.INSCRIT, registered_on),)
        sirets = {s for s in (formateur, responsable, dispensateur) if s}
        enrolments.apply(
            record=record,
            record_key=record_key,
            session_key=session_key,
            sirets=sirets,
            who=who,
            steps=steps,
            values=values,
            slot_ids={},
        )


# -- appointments ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AppointmentLine:
    """A parsed, validated appointments line (no personal data left)."""

    carif_session: str
    carif_action: str | None
    siret: str
    modality: str
    slot: slots.SlotData
    who: Candidate
    steps: tuple[Step, ...]
    origin: str | None
    deleted: bool


def _parse_appointment(
    record: Record, errors: LineErrors, pseudonymiser: Pseudonymiser
) -> AppointmentLine | None:
    get = record.get
    carif_session = get("numero_session_carif")
    if not carif_session:
        errors.add("numero_session_carif", "blank CARIF session number")
    siret = errors.parse("siret_dispensateur", parse_siret, get("siret_dispensateur"))
    if siret is None and not any(r["path"] == "siret_dispensateur" for r in errors.reasons):
        errors.add("siret_dispensateur", "blank SIRET")
    modality_code = errors.parse("modalite", choice(c.MODALITY_CODES, "modality"), get("modalite"))
    if modality_code is None and not any(r["path"] == "modalite" for r in errors.reasons):
        errors.add("modalite", "blank modality")
    who = Candidate(
        pseudonymiser.pseudonym("local", get("identifiant_candidat")),
        pseudonymiser.pseudonym("national", get("identifiant_national")),
    )
    if not who.local:
        errors.add("identifiant_candidat", "blank candidate identifier")
    updated = errors.parse("date_maj", parse_date, get("date_maj"))
    if updated is None and not any(r["path"] == "date_maj" for r in errors.reasons):
        errors.add("date_maj", "blank last-update date")
    on = errors.parse("date_rdv", parse_date, get("date_rdv"))
    window_start = errors.parse("periode_debut", parse_date, get("periode_debut"))
    window_end = errors.parse("periode_fin", parse_date, get("periode_fin"))
    start_time = errors.parse("heure_debut", parse_time, get("heure_debut"))
    end_time = errors.parse("heure_fin", parse_time, get("heure_fin"))
    capacity = errors.parse("capacite", parse_count, get("capacite"))
    remote = errors.parse("a_distance", parse_flag, get("a_distance"))
    presence = errors.parse("presence", choice(c.PRESENCE, "presence"), get("presence"))
    result = errors.parse("resultat", choice(c.RESULT, "result"), get("resultat"))
    rdv_status = errors.parse(
        "statut_rdv",
        choice(c.APPOINTMENT_STATUS, "appointment status"),
        get("statut_rdv"),
    )
    contact = errors.parse(
        "prise_de_contact", choice(c.CONTACT, "contact"), get("prise_de_contact")
    )
    registration = errors.parse(
        "statut_inscription",
        choice(c.REGISTRATION, "registration status"),
        get("statut_inscription"),
    )
    entry = errors.parse("date_entree", parse_date, get("date_entree"))
    exit_ = errors.parse("date_sortie", parse_date, get("date_sortie"))
    origin = errors.parse(
        "origine_prescription",
        choice(c.ORIGINS, "prescription origin"),
        get("origine_prescription"),
    )
    if errors:
        return None
    assert siret and modality_code and updated
    modality, lheo_code = c.MODALITIES[modality_code]
    # Consistency of the line with itself.
    if modality in ("ico", "rdvi") and on is None:
        errors.add("date_rdv", f"an {modality.upper()} line needs its appointment date")
    if modality == "candidature" and window_start is None:
        errors.add("periode_debut", "a candidature line needs its window start")
    if window_start and window_end and window_start > window_end:
        errors.add("periode_fin", f"window ends ({window_end}) before it starts ({window_start})")
    if on and updated < on and (presence or result):
        errors.add(
            "date_maj", f"presence or result recorded ({updated}) before the appointment ({on})"
        )
    for column, value in (("date_entree", entry), ("date_sortie", exit_)):
        if value and value > updated:
            errors.add(column, f"{column} {value} is after the last update {updated}")
    if rdv_status in ("rdv_annule", "rdv_supprime") and (presence or result or registration):
        errors.add(
            "statut_rdv", f"'{rdv_status}' appointment with a presence, result or registration"
        )
    if presence == "absent" and result:
        errors.add("resultat", "a result for a candidate absent from the appointment")
    if errors:
        return None
    if modality == "candidature":
        slot_key = f"candidature:{window_start}:{window_end or ''}"
        starts_on, ends_on = window_start, window_end
    else:
        slot_key = f"{modality}:{on}:{start_time or ''}"
        starts_on, ends_on = on, on
    slot = slots.SlotData(
        slot_key=slot_key,
        modality=modality,
        modality_code=lheo_code,
        starts_on=starts_on,
        ends_on=ends_on,
        start_time=start_time,
        end_time=end_time,
        capacity=capacity,
        address_lines=get("adresse") or None,
        postal_code=get("code_postal") or None,
        city=get("ville") or None,
        remote=remote,
    )
    # The statuses this line asserts, in lifecycle order, with the date the export gives
    # for each (None: dated by date_steps from what follows, else the last update).
    asserted: list[tuple[Status, date | None, str | None]] = [(Status.POSITIONNE, None, slot_key)]
    if contact:
        asserted.append((Status(contact), None, slot_key))
    if rdv_status in ("rdv_annule", "rdv_supprime"):
        asserted.append((Status(rdv_status), None, slot_key))
    if result and not presence:
        # Results are only entered for present candidates (obligations deck).
        presence = "present"
    if registration and not result and not presence:
        presence = "present"
    if registration and not result:
        result = "retenu"  # a registration status follows a 'retenu' result (obligations deck)
    if presence:
        asserted.append((Status(presence), on, slot_key))
    if result:
        asserted.append((Status(result), None, slot_key))
    if registration:
        reg = Status(registration)
        if reg in (
            Status.ENTRE,
            Status.ABSENT_ENTREE,
            Status.INTERRUPTION,
            Status.ABANDON,
            Status.SORTI,
        ):
            asserted.append((Status.INSCRIT, None, None))
        if reg in (Status.INTERRUPTION, Status.ABANDON, Status.SORTI):
            asserted.append((Status.ENTRE, entry, None))
        if reg in (Status.ENTRE, Status.ABSENT_ENTREE):
            asserted.append((reg, entry, None))
        elif reg in (Status.ABANDON, Status.SORTI):
            asserted.append((reg, exit_, None))
        else:
            asserted.append((reg, None, None))
    return AppointmentLine(
        carif_session=carif_session,
        carif_action=get("numero_action_carif") or None,
        siret=siret,
        modality=modality,
        slot=slot,
        who=who,
        steps=date_steps(asserted, updated),
        origin=origin,
        deleted=rdv_status == "rdv_supprime",
    )


def _load_appointments(run: Run, table: ExportTable, pseudonymiser: Pseudonymiser) -> None:
    """Each line: a recruitment slot (origin 'kairos') and a step of an enrolment.

    Two passes: the slots first (all lines of one appointment merged, so the slot is
    written once and its deletion does not depend on line order), then the enrolments,
    whose events point at the slot rows.
    """
    parsed: list[tuple[Record, AppointmentLine, int | None, str | None, str | None]] = []
    slot_writer = slots.SlotWriter(run.conn, run.tables, run.run_id, run.count)
    for record in _records(run, table):
        errors = LineErrors(record.line)
        line = _parse_appointment(record, errors, pseudonymiser)
        if line is None:
            # The candidate appears in quarantine only as a pseudonym.
            pseudonym = pseudonymiser.pseudonym("local", record.get("identifiant_candidat"))
            key = "|".join(
                [
                    record.get("numero_session_carif"),
                    record.get("siret_dispensateur"),
                    pseudonym or "",
                ]
            )
            run.quarantine(record.line, errors.reasons, key)
            continue
        session_id, dispensateur, method = _link(run, line.carif_session, line.siret, None)
        if session_id is None:
            run.count("slots_unmatched")
        else:
            slot_writer.add(session_id, line.slot, line.deleted)
        parsed.append((record, line, session_id, dispensateur, method))
    slot_ids = slot_writer.flush()
    enrolments = Enrolments(run)
    for record, line, session_id, dispensateur, method in parsed:
        values = {
            "carif_session_numero": line.carif_session,
            "carif_action_numero": line.carif_action,
            "ft_session_id": None,
            "dispensateur_siret": dispensateur,
            "responsable_siret": None,
            "kairos_session_id": session_id,
            "link_method": method,
            "origin": line.origin,
            "modality": line.modality,
        }
        line_slot_ids = {}
        if session_id is not None:
            line_slot_ids[line.slot.slot_key] = slot_ids[(session_id, line.slot.slot_key)]
        enrolments.apply(
            record=record,
            record_key=f"{line.carif_session}|{line.siret}|{line.who.primary}",
            session_key=line.carif_session,
            sirets={line.siret},
            who=line.who,
            steps=line.steps,
            values=values,
            slot_ids=line_slot_ids,
        )
