"""The KAIROS list of each session's recruitment modalities (`--kind modalities`).

RDVI ranges and candidature windows are entered in KAIROS (NG), not in the CARIF-OREF's
tool ("L'échange d'informations entre SOFI, Ouiform et Kairos": "l'organisme de formation
peut choisir de mettre en ligne … des informations collectives, des rendez-vous individuels
et /ou d'ouvrir une plage de candidature"): the offer file cannot show them, and the
appointments export only lists those that already have a candidate. This export lists
every modality of a session, with or without candidates (contract in
docs/kairos-exports.md):

    dc_numeroicsession|dc_siretformateur|type_modalite|date_debut|date_fin|nb_places|statut
    S-0001|48151623520009|RDVI|20/11/2026|20/12/2026|8|OUVERT

Each line is a `recruitment_slot` of origin `kairos` of the KAIROS session (CARIF session
number, dispensateur SIRET), keyed `mod:<modality>:<start>:<end>` (`#2`… for repeats). A
file replaces the `mod:` slots of every session it lists, and of every session of the CARIF
sources it covers (`covers`, else the sources of the sessions it matched): a modality no
longer listed is closed, with the history convention of core/history.py. Slots from the
appointments export (`ico:`, `rdvi:`, `candidature:` keys) are left alone. Lines naming no
session we hold are kept in `kairos_modality_unmatched` and counted. The run records which
sources it covered on which day (`kairos_export_coverage`): the checks only call a session
"bloquée" when a recent export saw no open modality for it either.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core.history import record_versions, utcnow
from pipelines.kairos_exports.reading import Record
from pipelines.kairos_exports.values import (
    choice,
    parse_count,
    parse_date,
    siret_problem,
    siret_text,
)

ORIGIN = "kairos"
KEY_PREFIX = "mod:"
RUN_KIND = "modalities"

REQUIRED: Mapping[str, str] = {
    c: c
    for c in (
        "dc_numeroicsession",
        "dc_siretformateur",
        "type_modalite",
        "date_debut",
        "date_fin",
        "nb_places",
        "statut",
    )
}
ALIASES: Mapping[str, str] = {
    "dc_siretorganismeformateur": "dc_siretformateur",
    "numero_session_carif": "dc_numeroicsession",
    "siret_dispensateur": "dc_siretformateur",
    "modalite": "type_modalite",
    "capacite": "nb_places",
}
# type_modalite → (recruitment_slot.modality, LHEO dict-modalite-recrutement code)
MODALITIES: Mapping[str, tuple[str, int]] = {
    "ico": ("ico", 9),
    "ric": ("ico", 9),
    "information_collective": ("ico", 9),
    "9": ("ico", 9),
    "rdvi": ("rdvi", 8),
    "rdv_individuel": ("rdvi", 8),
    "rendez_vous_individuel": ("rdvi", 8),
    "8": ("rdvi", 8),
    "candidature": ("candidature", 7),
    "inscription_sur_candidature": ("candidature", 7),
    "7": ("candidature", 7),
}
STATUSES: Mapping[str, str] = {
    "ouvert": "open",
    "ouverte": "open",
    "ferme": "closed",
    "fermee": "closed",
    "clos": "closed",
    "close": "closed",
    "complet": "closed",
    "annule": "cancelled",
    "annulee": "cancelled",
}


class ExportRun(Protocol):
    """What the loader needs of an ingestion run (pipelines/kairos_exports/ingest.py Run)."""

    conn: Connection
    tables: Mapping[str, sa.Table]
    run_id: int
    file: str

    def count(self, name: str, by: int = 1) -> None: ...

    def quarantine(
        self, line: int, reasons: list[dict[str, Any]], record_key: str | None = None
    ) -> None: ...

    def sessions(self, carif_session: str, siret: str) -> list[sa.Row[Any]]: ...


@dataclass(frozen=True)
class Modality:
    """One parsed line."""

    line: int
    carif_session: str
    siret: str
    modality: str
    modality_code: int
    starts_on: date
    ends_on: date
    capacity: int | None
    status: str

    def slot_values(self) -> dict[str, Any]:
        return {
            "modality": self.modality,
            "modality_code": self.modality_code,
            "starts_on": self.starts_on,
            "ends_on": self.ends_on,
            "starts_raw": self.starts_on.isoformat(),
            "ends_raw": self.ends_on.isoformat(),
            "capacity": self.capacity,
            "status": self.status,
        }


def _content_hash(values: Mapping[str, Any]) -> str:
    payload = json.dumps(values, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def parse_line(record: Record, add: Callable[[str, str], None]) -> Modality | None:
    """A line as a Modality, or None after `add(column, reason)` for each problem."""
    problems: list[str] = []

    def problem(column: str, message: str) -> None:
        problems.append(column)
        add(column, message)

    def parsed(column: str, parser: Callable[[str], Any], blank: str | None = None) -> Any:
        raw = record.get(column)
        if not raw:
            if blank:
                problem(column, blank)
            return None
        try:
            return parser(raw)
        except ValueError as exc:
            problem(column, str(exc))
            return None

    carif = record.get("dc_numeroicsession")
    if not carif:
        problem("dc_numeroicsession", "blank CARIF session number")
    siret = siret_text(record.get("dc_siretformateur"))
    if siret is None:
        problem("dc_siretformateur", "no SIRET")
    elif not (len(siret) == 14 and siret.isdigit()):
        problem("dc_siretformateur", siret_problem(siret))
    kind = parsed(
        "type_modalite",
        choice({k: k for k in MODALITIES}, "modality"),
        "blank modality (ICO, RDVI or CANDIDATURE)",
    )
    status = parsed("statut", choice(STATUSES, "status"), "blank status (OUVERT, FERME or ANNULE)")
    start = parsed("date_debut", parse_date, "blank start date")
    end = parsed("date_fin", parse_date)
    capacity = parsed("nb_places", parse_count)
    if start and end and end < start:
        problem("date_fin", f"the modality ends ({end}) before it starts ({start})")
    if problems:
        return None
    assert carif and siret and kind and status and start
    modality, code = MODALITIES[kind]
    return Modality(
        line=record.line,
        carif_session=carif,
        siret=siret,
        modality=modality,
        modality_code=code,
        starts_on=start,
        ends_on=end or start,  # an information meeting has one day
        capacity=capacity,
        status=status,
    )


def load_modalities(
    run: ExportRun,
    records: Iterable[Record],
    *,
    covers: Sequence[str] | None,
    seen_on: date,
    at: datetime | None = None,
) -> None:
    """Replace the KAIROS modalities of the sessions the file lists and of the sources it
    covers (module docstring); keep and count the lines naming no session."""
    at = at or utcnow()
    wanted: dict[int, dict[str, Modality]] = {}
    sources: set[str] = set()
    unmatched = run.tables["kairos_modality_unmatched"]
    for record in records:
        reasons: list[dict[str, Any]] = []
        line = parse_line(record, _collector(reasons, record.line))
        if line is None:
            key = "|".join([record.get("dc_numeroicsession"), record.get("dc_siretformateur")])
            run.quarantine(record.line, reasons, key)
            continue
        found = run.sessions(line.carif_session, line.siret)
        if not found:
            run.conn.execute(
                unmatched.insert(),
                {
                    "run_id": run.run_id,
                    "file": run.file,
                    "line": line.line,
                    "carif_session_numero": line.carif_session,
                    "dispensateur_siret": line.siret,
                    "modality": line.modality,
                    "starts_on": line.starts_on,
                    "ends_on": line.ends_on,
                    "capacity": line.capacity,
                    "status": line.status,
                },
            )
            run.count("unmatched")
            continue
        if len(found) > 1:
            run.count("ambiguous_links")
        run.count("linked")
        session = found[0]
        sources.add(str(session.source))
        slots = wanted.setdefault(int(session.id), {})
        base = f"{KEY_PREFIX}{line.modality}:{line.starts_on}:{line.ends_on}"
        key, repeat = base, 1
        while key in slots:
            repeat += 1
            key = f"{base}#{repeat}"
        slots[key] = line
    covered = sorted(set(covers) if covers else sources)
    _write_slots(run, wanted, covered, at)
    coverage = run.tables["kairos_export_coverage"]
    for source in covered:
        run.conn.execute(
            coverage.insert(),
            {"run_id": run.run_id, "run_kind": RUN_KIND, "source": source, "seen_on": seen_on},
        )
    run.count("sources_covered", len(covered))
    run.count("sessions_listed", len(wanted))


def _collector(reasons: list[dict[str, Any]], line: int) -> Callable[[str, str], None]:
    """`add(column, message)` appending a quarantine reason of `line`."""

    def add(column: str, message: str) -> None:
        reasons.append({"line": line, "path": column, "message": message})

    return add


def _write_slots(
    run: ExportRun,
    wanted: Mapping[int, Mapping[str, Modality]],
    covered: Sequence[str],
    at: datetime,
) -> None:
    """Insert, update, reopen and close `mod:` slots (history convention), then version."""
    t = run.tables["recruitment_slot"]
    sessions = run.tables["kairos_session"]
    conn = run.conn
    existing: dict[int, dict[str, Any]] = {}
    scope = sa.or_(
        t.c.kairos_session_id.in_(sorted(wanted)) if wanted else sa.false(),
        t.c.kairos_session_id.in_(
            sa.select(sessions.c.id).where(sessions.c.source.in_(list(covered)))
        )
        if covered
        else sa.false(),
    )
    query = sa.select(
        t.c.id, t.c.kairos_session_id, t.c.slot_key, t.c.content_hash, t.c.closed_at
    ).where(t.c.origin == ORIGIN, t.c.slot_key.like(f"{KEY_PREFIX}%"), scope)
    for row in conn.execute(query):
        existing.setdefault(int(row.kairos_session_id), {})[str(row.slot_key)] = row
    changed = False
    for session_id, slots in wanted.items():
        known = existing.get(session_id, {})
        for key, line in slots.items():
            values = line.slot_values()
            content_hash = _content_hash(values)
            found = known.get(key)
            if found is None:
                conn.execute(
                    t.insert(),
                    {
                        **values,
                        "kairos_session_id": session_id,
                        "origin": ORIGIN,
                        "slot_key": key,
                        "content_hash": content_hash,
                        "first_seen_run_id": run.run_id,
                        "last_seen_run_id": run.run_id,
                    },
                )
                run.count("slots_inserted")
            elif found.content_hash != content_hash or found.closed_at is not None:
                conn.execute(
                    t.update()
                    .where(t.c.id == found.id)
                    .values(
                        **values,
                        content_hash=content_hash,
                        last_seen_run_id=run.run_id,
                        closed_at=None,
                        closed_run_id=None,
                    )
                )
                run.count("slots_updated")
            else:
                run.count("slots_unchanged")
                continue
            changed = True
    for session_id, known in existing.items():
        listed = wanted.get(session_id, {})
        for key, old in known.items():
            if key not in listed and old.closed_at is None:
                # No longer in KAIROS's list: the modality was removed there.
                conn.execute(
                    t.update()
                    .where(t.c.id == old.id)
                    .values(closed_at=at, closed_run_id=run.run_id)
                )
                run.count("slots_closed")
                changed = True
    if changed:
        record_versions(conn, "recruitment_slot", run_id=run.run_id, at=at)
