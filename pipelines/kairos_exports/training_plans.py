"""France Travail training-plan exports: each line an enrolment at least 'inscrit'.

Lines are parsed one by one (bad ones quarantined with their column), then linked to
KAIROS sessions and handed to the enrolment writer a batch at a time: one query reads
the sessions of a batch, and enrolments.py writes it set-wise. A national export repeats
the same SIRETs, dates and funder lists on thousands of lines: their parsing is memoised
for the run (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

from pipelines.kairos_exports.enrolments import BATCH_LINES, Candidate, Enrolments
from pipelines.kairos_exports.lifecycle import Status, Step
from pipelines.kairos_exports.pseudonym import Pseudonymiser
from pipelines.kairos_exports.reading import Record
from pipelines.kairos_exports.run import LineErrors, Run
from pipelines.kairos_exports.values import (
    parse_date,
    parse_financeurs,
    siret_is_valid,
    siret_problem,
    siret_text,
)

# The same few thousand values over a million lines; a bounded memo keeps memory flat.
_parse_date = lru_cache(maxsize=1 << 14)(parse_date)
_parse_financeurs = lru_cache(maxsize=1 << 12)(parse_financeurs)


@lru_cache(maxsize=1 << 17)
def _siret(raw: str) -> tuple[str | None, str | None, bool]:
    """(SIRET text or None for a placeholder, problem if not fourteen digits, check digit ok)."""
    text = siret_text(raw)
    if text is None:
        return None, None, False
    if not (len(text) == 14 and text.isdigit()):
        return text, siret_problem(text), False
    return text, None, siret_is_valid(text)


@dataclass
class _PlanLine:
    """A parsed, valid training-plan line (candidates already pseudonymised)."""

    line: int  # the record's line (the record itself holds personal data)
    record_key: str
    who: Candidate
    carif_session: str | None
    session_key: str
    formateur: str | None
    responsable: str | None
    values: dict[str, Any]
    steps: tuple[Step, ...]


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
        text, problem, valid = _siret(raw)
        if text is None:
            if raw:
                run.count("siret_absent_placeholder")
        elif problem:
            errors.add(column, problem)
        elif not valid:
            run.count("siret_check_failed")
        found[column] = text
    formateur, responsable = found["dc_siretformateur"], found["dc_siret"]
    if formateur is None and responsable is None and not errors:
        errors.add("dc_siretformateur", "no SIRET (dc_siretformateur, dc_siret)")
    return formateur, responsable


def _parse(run: Run, record: Record, pseudonymiser: Pseudonymiser, as_of: date) -> _PlanLine | None:
    """The line parsed, or None once it is quarantined."""
    errors = LineErrors(record.line)
    get = record.get
    who = Candidate(
        pseudonymiser.pseudonym("local", get("c_individulocal")),
        pseudonymiser.pseudonym("national", get("dn_individu_national")),
    )
    if not (who.local or who.national):
        errors.add(
            "c_individulocal", "no candidate identifier (c_individulocal, dn_individu_national)"
        )
    formateur, responsable = _plan_sirets(run, record, errors)
    carif_session = get("dc_numeroicsession") or None
    ft_session = get("dn_session_id") or None
    if not (carif_session or ft_session):
        errors.add("dc_numeroicsession", "no session number (dc_numeroicsession, dn_session_id)")
    start = errors.parse("dd_datedebutplanformation", _parse_date, get("dd_datedebutplanformation"))
    end = errors.parse("dd_datefinplanformation", _parse_date, get("dd_datefinplanformation"))
    if start and end and start > end:
        errors.add("dd_datefinplanformation", f"plan ends ({end}) before it starts ({start})")
    session_key = carif_session or f"ft:{ft_session}"
    record_key = "|".join(
        [session_key, formateur or responsable or "", who.local or who.national or ""]
    )
    if errors:
        run.quarantine(record.line, errors.reasons, record_key)
        return None
    values = {
        "carif_session_numero": carif_session,
        "carif_action_numero": get("dc_numeroicaction") or None,
        "ft_session_id": ft_session,
        "responsable_siret": responsable,
        "planned_start": start,
        "planned_end": end,
        "formation_id": get("dc_formation_id") or None,
        "formation_label": get("dc_lblformation") or None,
        "dispositif": get("c_dispositifformation") or None,
        "financeurs": _parse_financeurs(get("liste_financeur")),
        "lieu_postal_code": get("dc_cp_lieuformation") or None,
        "lieu_insee": get("dc_insee_lieuformation") or None,
    }
    registered_on = min(start, as_of) if start else as_of
    return _PlanLine(
        record.line,
        record_key,
        who,
        carif_session,
        session_key,
        formateur,
        responsable,
        values,
        (Step(Status.INSCRIT, registered_on),),
    )


def _link_and_queue(run: Run, enrolments: Enrolments, lines: list[_PlanLine]) -> None:
    """Link a batch of lines to their KAIROS sessions (one query) and queue them."""
    run.prefetch_sessions(
        (line.carif_session, siret)
        for line in lines
        if line.carif_session
        for siret in (line.formateur, line.responsable)
        if siret
    )
    for line in lines:
        session_id, dispensateur, method = run.link(
            line.carif_session, line.formateur, line.responsable
        )
        values = {
            **line.values,
            "dispensateur_siret": dispensateur,
            "kairos_session_id": session_id,
            "link_method": method,
        }
        enrolments.apply(
            line=line.line,
            record_key=line.record_key,
            session_key=line.session_key,
            sirets={s for s in (line.formateur, line.responsable, dispensateur) if s},
            who=line.who,
            steps=line.steps,
            values=values,
            slot_ids={},
        )


def load_training_plans(
    run: Run,
    records: Iterable[Record],
    pseudonymiser: Pseudonymiser,
    as_of: date,
    batch_lines: int = BATCH_LINES,
) -> None:
    """Each line: an enrolment at least 'inscrit' (a plan exists once validated).

    The 'inscrit' event is dated the plan's start date, or `as_of` when the start is
    later: the plan existed no later than both.
    """
    enrolments = Enrolments(run, batch_lines)
    pending: list[_PlanLine] = []
    for record in records:
        line = _parse(run, record, pseudonymiser, as_of)
        if line is not None:
            pending.append(line)
        if len(pending) >= batch_lines:
            _link_and_queue(run, enrolments, pending)
            pending = []
    _link_and_queue(run, enrolments, pending)
    enrolments.flush()
