"""The candidate and trainee lifecycle in KAIROS, as data: which status may follow which.

Sources (DOMAIN.md "Candidate and trainee lifecycle"): obligations deck (KAIROS ICO/RDVI screens,
registration statuses RETENU → A VALIDER → INSCRIT, entry, attendance, transfer rules),
SOFI–Ouiform–Kairos deck (KAIROS NG candidatures: contacté / injoignable / refus, presence at the
interview, result; "RDV annulé" in the ICO registrants list) and FAQ Occitanie (question 26: a
trainee absent at the start is a withdrawal; after one hour of training it is an abandon).

The statuses themselves are a vocabulary of the stored data (core/enrolment_status.py).
The table `TRANSITIONS` is the single source of truth: the loader asks `is_allowed`, the
docs (docs/kairos-exports.md) draw the same table as a mermaid diagram, and the tests walk
every row. A transition is `forward` (progress along the path) or a `correction` /
`repositioning` (a back edge the seeds explicitly allow); only forward edges are used to
decide whether a line describes an older state than the one already known (a stale line).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Literal

from core.enrolment_status import Status

S = Status
TransitionKind = Literal["forward", "correction", "repositioning"]


@dataclass(frozen=True)
class Transition:
    """One allowed move; `source` None is the start of an enrolment."""

    source: Status | None
    target: Status
    kind: TransitionKind
    why: str
    other_slot_only: bool = False  # the new appointment must differ from the current one


TRANSITIONS: tuple[Transition, ...] = (
    # How an enrolment starts.
    Transition(None, S.POSITIONNE, "forward", "positioned on an ICO, RDVI or candidature window"),
    Transition(
        None,
        S.RETENU,
        "forward",
        "retained without appointment (e.g. e-mailed prescription, FAQ Occitanie 17)",
    ),
    Transition(
        None,
        S.A_VALIDER,
        "forward",
        "self-positioned job seeker, to be validated (obligations deck)",
    ),
    Transition(
        None, S.INSCRIT, "forward", "first seen in a training plan (validated registration)"
    ),
    # Appointment: ICO, RDVI, candidature.
    Transition(S.POSITIONNE, S.CONTACTE, "forward", "candidature: OF reached the candidate"),
    Transition(S.POSITIONNE, S.INJOIGNABLE, "forward", "candidature: candidate unreachable"),
    Transition(S.POSITIONNE, S.REFUS_CANDIDAT, "forward", "candidature: candidate declines"),
    Transition(S.INJOIGNABLE, S.CONTACTE, "forward", "candidature: reached on a later try"),
    Transition(S.INJOIGNABLE, S.REFUS_CANDIDAT, "forward", "candidature: candidate declines"),
    Transition(S.INJOIGNABLE, S.RDV_ANNULE, "forward", "candidature withdrawn"),
    Transition(S.CONTACTE, S.REFUS_CANDIDAT, "forward", "candidature: candidate declines"),
    Transition(S.CONTACTE, S.RDV_ANNULE, "forward", "interview cancelled by the job seeker"),
    Transition(S.POSITIONNE, S.PRESENT, "forward", "attended the appointment"),
    Transition(S.POSITIONNE, S.ABSENT, "forward", "missed the appointment"),
    Transition(S.CONTACTE, S.PRESENT, "forward", "attended the interview"),
    Transition(S.CONTACTE, S.ABSENT, "forward", "missed the interview"),
    Transition(
        S.POSITIONNE, S.RDV_ANNULE, "forward", "RDV annulé by the job seeker (obligations deck)"
    ),
    Transition(
        S.POSITIONNE,
        S.RDV_SUPPRIME,
        "forward",
        "RDV supprimé: slot deleted by the OF (obligations deck)",
    ),
    Transition(
        S.POSITIONNE,
        S.POSITIONNE,
        "repositioning",
        "transferred to another RDV of the session (obligations deck)",
        other_slot_only=True,
    ),
    Transition(
        S.ABSENT,
        S.POSITIONNE,
        "repositioning",
        "absent, transferred to another RDV (obligations deck)",
        other_slot_only=True,
    ),
    Transition(
        S.RDV_ANNULE,
        S.POSITIONNE,
        "repositioning",
        "new positioning by a prescriber (not a transfer, which obligations deck forbids)",
        other_slot_only=True,
    ),
    Transition(
        S.RDV_SUPPRIME,
        S.POSITIONNE,
        "repositioning",
        "new positioning after the OF deleted the slot",
        other_slot_only=True,
    ),
    Transition(
        S.ABSENT,
        S.PRESENT,
        "correction",
        "absence corrected: 'possible de modifier l'état d'absence' (obligations deck)",
    ),
    # Result of the appointment.
    Transition(S.PRESENT, S.RETENU, "forward", "résultat: retenu"),
    Transition(S.PRESENT, S.RETENU_EN_ATTENTE, "forward", "résultat: retenu mis en attente"),
    Transition(S.PRESENT, S.NON_RETENU, "forward", "résultat: non retenu"),
    Transition(
        S.RETENU_EN_ATTENTE,
        S.RETENU,
        "forward",
        "retenir un DE en attente (SOFI–Ouiform–Kairos deck §4.1.8.2.1)",
    ),
    Transition(
        S.RETENU_EN_ATTENTE,
        S.NON_RETENU,
        "forward",
        "refuser un DE en attente (SOFI–Ouiform–Kairos deck §4.1.8.2.2)",
    ),
    Transition(
        S.NON_RETENU,
        S.RETENU,
        "correction",
        "'possible de modifier l'état non retenu' (obligations deck)",
    ),
    # Registration.
    Transition(
        S.RETENU, S.A_VALIDER, "forward", "to be validated by the prescriber (obligations deck)"
    ),
    Transition(S.RETENU, S.INSCRIT, "forward", "validated by the adviser (obligations deck)"),
    Transition(
        S.A_VALIDER, S.INSCRIT, "forward", "validated via AUDEF / OUIFORM (obligations deck)"
    ),
    # Training path.
    Transition(S.INSCRIT, S.ENTRE, "forward", "entry recorded on the start date (AES)"),
    Transition(
        S.INSCRIT, S.ABSENT_ENTREE, "forward", "absent at entry: withdrawal (FAQ Occitanie 26)"
    ),
    Transition(
        S.ENTRE, S.INTERRUPTION, "forward", "interruption period over 15 days (obligations deck)"
    ),
    Transition(S.ENTRE, S.ABANDON, "forward", "dropout after at least one hour (FAQ Occitanie 26)"),
    Transition(S.ENTRE, S.SORTI, "forward", "exit"),
    Transition(S.INTERRUPTION, S.ENTRE, "correction", "back from an interruption"),
    Transition(S.INTERRUPTION, S.ABANDON, "forward", "dropout during an interruption"),
    Transition(S.INTERRUPTION, S.SORTI, "forward", "exit during an interruption"),
)

TERMINAL: frozenset[Status] = frozenset(
    s for s in Status if not any(t.source is s for t in TRANSITIONS)
)


def find_transition(source: Status | None, target: Status) -> Transition | None:
    """The table row for source → target, if any."""
    for transition in TRANSITIONS:
        if transition.source is source and transition.target is target:
            return transition
    return None


def is_allowed(
    source: Status | None,
    target: Status,
    *,
    same_slot: bool = False,
) -> bool:
    """Whether source → target is in the table (and its slot guard holds)."""
    transition = find_transition(source, target)
    if transition is None:
        return False
    return not (transition.other_slot_only and same_slot)


@cache
def forward_successors(status: Status) -> frozenset[Status]:
    """Statuses reachable from `status` through forward edges only (strictly later)."""
    seen: set[Status] = set()
    frontier = [status]
    while frontier:
        current = frontier.pop()
        for t in TRANSITIONS:
            if t.source is current and t.kind == "forward" and t.target not in seen:
                seen.add(t.target)
                frontier.append(t.target)
    seen.discard(status)
    return frozenset(seen)


def is_later(candidate: Status, reference: Status) -> bool:
    """True when `candidate` is strictly further along the path than `reference`."""
    return candidate in forward_successors(reference)


@dataclass(frozen=True)
class Step:
    """One status a line asserts, with its date and the appointment it belongs to."""

    status: Status
    on: date
    slot_key: str | None = None


@dataclass(frozen=True)
class CurrentState:
    """What the database already knows of an enrolment."""

    status: Status
    on: date
    slot_key: str | None
    history: frozenset[tuple[str, date, str | None]]  # (status, date, slot) of every event


@dataclass(frozen=True)
class Plan:
    """The outcome of confronting a line's steps with the current state."""

    new_steps: tuple[Step, ...]
    stale: bool = False  # the line describes an older state: nothing to do
    rejection: str | None = None  # impossible transition: quarantine with this reason


def date_steps(
    statuses: Iterable[tuple[Status, date | None, str | None]], last_resort: date
) -> tuple[Step, ...]:
    """Give every asserted status a date, non-decreasing along the path.

    Exports carry a few dates (appointment, last update, entry, exit) for several
    statuses at once. Each status gets its own date when the export has one, else the
    last-resort date (the line's last update); then, walking backwards, each step is
    dated no later than the step after it: an implied step happened no later than
    what follows it.
    """
    items = list(statuses)
    steps: list[Step] = []
    bound: date | None = None
    for status, on, slot in reversed(items):
        when = on or last_resort
        if bound is not None and when > bound:
            when = bound
        steps.append(Step(status, when, slot))
        bound = when
    return tuple(reversed(steps))


def plan_steps(current: CurrentState | None, steps: tuple[Step, ...]) -> Plan:
    """Which of `steps` are new for this enrolment, or why the line must be rejected.

    - A line whose last step is already in the history is a replay: nothing new
      (this is what makes re-ingesting a file idempotent, whatever the line order).
    - A line whose last step is strictly earlier on the path than the current status,
      and not later in time, is a stale snapshot: nothing new, nothing wrong.
    - Otherwise the line continues the path from the current status: either the
      current status is one of its steps (continue after it) or the first step that
      the table allows from the current status starts the continuation.
    """
    if not steps:
        return Plan(())
    if current is None:
        if is_allowed(None, steps[0].status):
            return _checked(None, steps)
        return Plan((), rejection=f"an enrolment cannot start at '{steps[0].status}'")
    final = steps[-1]
    if (final.status.value, final.on, final.slot_key) in current.history:
        return Plan((), stale=True)
    new_slot = final.status is S.POSITIONNE and final.slot_key != current.slot_key
    if is_later(current.status, final.status) and final.on <= current.on and not new_slot:
        return Plan((), stale=True)
    for index in range(len(steps) - 1, -1, -1):
        step = steps[index]
        if step.status is current.status and (
            step.status is not S.POSITIONNE or step.slot_key == current.slot_key
        ):
            return _dated(current, steps[index + 1 :])
    for index, step in enumerate(steps):
        same_slot = step.slot_key == current.slot_key
        if is_allowed(current.status, step.status, same_slot=same_slot):
            return _dated(current, steps[index:])
    return Plan(
        (),
        rejection=f"impossible transition '{current.status}' → '{final.status}'",
    )


def _checked(source: Status | None, steps: tuple[Step, ...]) -> Plan:
    """Every consecutive pair of `steps` (starting from `source`) must be allowed."""
    previous = source
    previous_slot: str | None = None
    for step in steps:
        same_slot = previous is not None and step.slot_key == previous_slot
        if not is_allowed(previous, step.status, same_slot=same_slot):
            origin = "start" if previous is None else f"'{previous}'"
            return Plan((), rejection=f"impossible transition {origin} → '{step.status}'")
        previous, previous_slot = step.status, step.slot_key
    return Plan(steps)


def _dated(current: CurrentState, steps: tuple[Step, ...]) -> Plan:
    """Continue from `current`: transitions checked, dates not before the current one."""
    if not steps:
        return Plan((), stale=True)
    if steps[-1].on < current.on:
        return Plan(
            (),
            rejection=(
                f"'{steps[-1].status}' dated {steps[-1].on.isoformat()} is earlier than "
                f"the current status '{current.status}' of {current.on.isoformat()}"
            ),
        )
    plan = _checked_from(current, steps)
    if plan.rejection:
        return plan
    # Implied steps may carry an earlier date than what we already know: they happened
    # no earlier than the current status, so clamp them to keep the history ordered.
    clamped = tuple(Step(s.status, max(s.on, current.on), s.slot_key) for s in plan.new_steps)
    return Plan(clamped)


def _checked_from(current: CurrentState, steps: tuple[Step, ...]) -> Plan:
    previous: Status = current.status
    previous_slot = current.slot_key
    for step in steps:
        same_slot = step.slot_key == previous_slot
        if not is_allowed(previous, step.status, same_slot=same_slot):
            return Plan((), rejection=f"impossible transition '{previous}' → '{step.status}'")
        previous = step.status
        if step.slot_key is not None:
            previous_slot = step.slot_key
    return Plan(steps)
