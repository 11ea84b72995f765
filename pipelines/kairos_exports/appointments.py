"""KAIROS appointments exports: each line a recruitment slot and a step of an enrolment.

A line names a session (CARIF number and dispensateur SIRET), an appointment or a
candidature window, and where one candidate stands on it: positioned, contacted, present,
retained, registered, entered … (lifecycle.py). The slot goes to `recruitment_slot`
(origin 'kairos', slots.py); the steps to the candidate's enrolment (enrolments.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

from pipelines.kairos_exports import contracts as c
from pipelines.kairos_exports import slots
from pipelines.kairos_exports.enrolments import BATCH_LINES, Candidate, Enrolments
from pipelines.kairos_exports.lifecycle import Status, Step, date_steps
from pipelines.kairos_exports.pseudonym import Pseudonymiser
from pipelines.kairos_exports.reading import Record
from pipelines.kairos_exports.run import LineErrors, Run
from pipelines.kairos_exports.values import (
    choice,
    parse_count,
    parse_date,
    parse_flag,
    parse_siret,
    parse_time,
)


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


def parse_appointment(
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


def load_appointments(
    run: Run,
    records: Iterable[Record],
    pseudonymiser: Pseudonymiser,
    batch_lines: int = BATCH_LINES,
) -> None:
    """Each line: a recruitment slot (origin 'kairos') and a step of an enrolment.

    Two passes: the slots first (all lines of one appointment merged, so the slot is
    written once and its deletion does not depend on line order), then the enrolments,
    whose events point at the slot rows.
    """
    # Line numbers, not records: a record holds the candidate's name and phone.
    parsed: list[tuple[int, AppointmentLine, int | None, str | None, str | None]] = []
    slot_writer = slots.SlotWriter(run.conn, run.tables, run.run_id, run.count)
    for record in records:
        errors = LineErrors(record.line)
        line = parse_appointment(record, errors, pseudonymiser)
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
        session_id, dispensateur, method = run.link(line.carif_session, line.siret, None)
        if session_id is None:
            run.count("slots_unmatched")
        else:
            slot_writer.add(session_id, line.slot, line.deleted)
        parsed.append((record.line, line, session_id, dispensateur, method))
    slot_ids = slot_writer.flush()
    enrolments = Enrolments(run, batch_lines)
    for line_no, line, session_id, dispensateur, method in parsed:
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
            line=line_no,
            record_key=f"{line.carif_session}|{line.siret}|{line.who.primary}",
            session_key=line.carif_session,
            sirets={line.siret},
            who=line.who,
            steps=line.steps,
            values=values,
            slot_ids=line_slot_ids,
        )
    enrolments.flush()
