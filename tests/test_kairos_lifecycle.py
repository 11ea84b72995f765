"""The enrolment state machine as data (pipelines/kairos_exports/lifecycle.py), no database."""

from __future__ import annotations

from datetime import date

import pytest

from pipelines.kairos_exports.lifecycle import (
    TERMINAL,
    TRANSITIONS,
    CurrentState,
    Status,
    Step,
    Transition,
    date_steps,
    is_allowed,
    is_later,
    plan_steps,
)

S = Status
D1, D2, D3 = date(2024, 3, 1), date(2024, 3, 10), date(2024, 3, 20)


def state(status: Status, on: date = D1, slot: str | None = "ico:A") -> CurrentState:
    return CurrentState(status, on, slot, frozenset({(status.value, on, slot)}))


@pytest.mark.parametrize("transition", TRANSITIONS, ids=lambda t: f"{t.source}->{t.target}")
def test_every_allowed_transition_is_planned(transition: Transition) -> None:
    slot = "ico:B" if transition.other_slot_only else "ico:A"
    step = Step(transition.target, D2, slot)
    if transition.source is None:
        plan = plan_steps(None, (step,))
    else:
        plan = plan_steps(state(transition.source), (step,))
    assert plan.rejection is None, transition
    assert plan.new_steps == (step,)


FORBIDDEN = [
    (S.POSITIONNE, S.INSCRIT),  # no presence nor result
    (S.POSITIONNE, S.RETENU),
    (S.ABSENT, S.RETENU),  # a result needs a presence
    (S.NON_RETENU, S.INSCRIT),
    (S.RETENU_EN_ATTENTE, S.INSCRIT),
    (S.RDV_ANNULE, S.PRESENT),  # a cancelled RDV cannot be attended
    (S.RDV_SUPPRIME, S.PRESENT),
    (S.PRESENT, S.ABSENT),  # only absences are corrected ("Rappel : les obligations légales" deck)
    (S.A_VALIDER, S.ENTRE),  # entry needs a validated registration
    (S.INSCRIT, S.SORTI),  # an exit needs an entry
    (S.ABSENT_ENTREE, S.ENTRE),  # withdrawal (FAQ Occitanie, question 26)
    (S.ABANDON, S.ENTRE),
    (S.SORTI, S.ENTRE),
    (S.REFUS_CANDIDAT, S.PRESENT),
    (None, S.ENTRE),
    (None, S.PRESENT),
]


@pytest.mark.parametrize(("source", "target"), FORBIDDEN, ids=lambda s: str(s))
def test_forbidden_transitions_are_rejected(source: Status | None, target: Status) -> None:
    assert not is_allowed(source, target)
    current = None if source is None else state(source)
    plan = plan_steps(current, (Step(target, D2, "ico:A"),))
    assert plan.new_steps == ()
    assert plan.rejection and str(target) in plan.rejection


def test_transfer_needs_another_slot() -> None:
    assert is_allowed(S.POSITIONNE, S.POSITIONNE, same_slot=False)
    assert not is_allowed(S.POSITIONNE, S.POSITIONNE, same_slot=True)
    # Same slot again is not a transfer: the line only repeats what is known.
    plan = plan_steps(state(S.POSITIONNE), (Step(S.POSITIONNE, D2, "ico:A"),))
    assert plan.new_steps == () and plan.rejection is None


def test_table_shape() -> None:
    pairs = [(t.source, t.target) for t in TRANSITIONS]
    assert len(pairs) == len(set(pairs)), "duplicate transitions"
    assert {S.ABANDON, S.SORTI, S.ABSENT_ENTREE, S.REFUS_CANDIDAT} == set(TERMINAL)
    # Every status can be reached from the start.
    reachable: set[Status] = set()
    frontier: list[Status | None] = [None]
    while frontier:
        current = frontier.pop()
        for t in TRANSITIONS:
            if t.source is current and t.target not in reachable:
                reachable.add(t.target)
                frontier.append(t.target)
    assert reachable == set(Status)


def test_forward_order() -> None:
    assert is_later(S.SORTI, S.POSITIONNE)
    assert is_later(S.INSCRIT, S.RETENU)
    assert not is_later(S.RETENU, S.INSCRIT)
    assert not is_later(S.POSITIONNE, S.POSITIONNE)


def test_line_continues_from_the_current_status() -> None:
    steps = (
        Step(S.POSITIONNE, D1, "ico:A"),
        Step(S.PRESENT, D1, "ico:A"),
        Step(S.RETENU, D2, "ico:A"),
    )
    plan = plan_steps(state(S.POSITIONNE), steps)
    assert [s.status for s in plan.new_steps] == [S.PRESENT, S.RETENU]


def test_replayed_line_is_a_noop() -> None:
    steps = (Step(S.POSITIONNE, D1, "ico:A"), Step(S.ABSENT, D1, "ico:A"))
    current = CurrentState(
        S.ABSENT, D1, "ico:A", frozenset({("positionne", D1, "ico:A"), ("absent", D1, "ico:A")})
    )
    assert plan_steps(current, steps).new_steps == ()


def test_stale_snapshot_is_ignored_not_rejected() -> None:
    # The enrolment is already 'inscrit'; an older export still shows 'retenu'.
    plan = plan_steps(state(S.INSCRIT, D3, None), (Step(S.RETENU, D2, "ico:A"),))
    assert plan.new_steps == () and plan.stale and plan.rejection is None


def test_step_older_than_current_status_is_rejected() -> None:
    plan = plan_steps(state(S.ENTRE, D3, None), (Step(S.SORTI, D1),))
    assert plan.rejection and "earlier than the current status" in plan.rejection


def test_date_steps_never_go_backwards() -> None:
    steps = date_steps(
        [
            (S.POSITIONNE, None, "a"),
            (S.PRESENT, D1, "a"),
            (S.RETENU, None, "a"),
            (S.ENTRE, D2, None),
        ],
        last_resort=D3,
    )
    assert [s.on for s in steps] == [D1, D1, D2, D2]


def test_docs_diagram_matches_the_table() -> None:
    """docs/kairos-exports.md draws exactly the rows of TRANSITIONS."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "kairos-exports.md").read_text(
        encoding="utf-8"
    )
    diagram = doc.split("```mermaid", 1)[1].split("```", 1)[0]
    drawn = set(re.findall(r"^\s*(\S+) --> (\S+)", diagram, flags=re.MULTILINE))
    expected = {
        ("[*]" if t.source is None else t.source.value, t.target.value) for t in TRANSITIONS
    }
    expected |= {(s.value, "[*]") for s in TERMINAL}
    assert drawn == expected
