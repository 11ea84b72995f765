"""LHEO `Formation` records → KAIROS session rows and recruitment slot rows (pure functions).

Who is a dispensateur, which places are whose and the split reason are the split rules of
transforms/dispensateurs.py (DOMAIN.md, "Mandataire and dispensateur"): one KAIROS session
per dispensateur SIRET of an LHEO session, each keeping the mandataire
(`organisme-formation-responsable`); guichet unique keeps one session under the mandataire.

Slots: 2.3 `session/recrutement` modality 9 → `ico`, 8 → `rdvi`, 7 → `candidature`, any
other modality → `other` (kept as information); a recrutement at one dispensateur's own site
is that dispensateur's only, else every dispensateur's. The action's `date-information`
(2.2, and 2.3 where it still exists) → an `ico` slot of each session of the action that has
not started on that date (fixed dates: the session starts on or after the meeting;
permanent entries: it has not ended), at the action's `adresse-information`: a meeting held
after a session's start recruits for the later sessions, not for that one. A meeting without
a usable date gives no slot (`undated_ico_count`).

Funded places belong to the LHEO session (`organisme-financeur` of its action): its KAIROS
rows carry the LHEO figure in `funded_places_lheo` with `funded_places_shared_by` (how many
dispensateurs share it), and count it once: `funded_places_total` holds it on the first
dispensateur's row and 0 on the others, so totals over KAIROS rows add up to the LHEO
figure.

Invalid SIRETs never raise: they are kept as written (stripped) with a `*_siret_valid`
flag for the quality checks. Dates are ISO text so rows go unchanged to COPY and SQLite.
Rows are NamedTuples: typed, and already the tuples the staging writers need.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, TypeVar

from stdnum.fr import siret as stdnum_siret

from core.config import GuichetUniqueMatcher, SourceConfig
from transforms.dispensateurs import (
    Dispensateur,
    dispensateurs,
    display_place,
    normalise_siret,
    owner_of,
    split_reason,
)
from transforms.lheo_dates import LheoDate
from transforms.placeholders import is_placeholder
from transforms.records import (
    MODALITY_CANDIDATURE,
    MODALITY_ICO,
    MODALITY_RDVI,
    Action,
    Address,
    Extra,
    Formation,
    Recruitment,
    Session,
)

MODALITY_NAMES = {MODALITY_ICO: "ico", MODALITY_RDVI: "rdvi", MODALITY_CANDIDATURE: "candidature"}
T = TypeVar("T")
# A missing numero gets a key starting with this character, which CARIF numbers never use.
DERIVED_PREFIX = "~"


@lru_cache(maxsize=1 << 14)
def siret_is_valid(siret: str | None) -> bool:
    """14 digits, Luhn (La Poste's SIREN 356000000 follows its own rule, which python-stdnum
    knows), and not the all-zero placeholder that real exports contain.

    Cached: the same SIRETs come back on every session of a file, and python-stdnum's
    pure-Python check was the largest single cost of the mapping."""
    if not siret or len(siret) != 14 or not siret.isdigit() or siret == "0" * 14:
        return False
    return bool(stdnum_siret.is_valid(siret))


class OrganisationRow(NamedTuple):
    siret: str
    siret_valid: bool
    raison_sociale: str | None
    nom: str | None
    numero_activite: str | None
    content_hash: str


class FormationRow(NamedTuple):
    source: str
    carif_formation_numero: str
    numero_derived: bool
    lheo_version: str
    intitule: str
    main_formacode: str | None
    mandataire_siret: str
    content_hash: str


class ActionRow(NamedTuple):
    source: str
    carif_action_numero: str
    carif_formation_numero: str
    numero_derived: bool
    guichet_unique: bool
    content_hash: str


class SessionRow(NamedTuple):
    """One KAIROS session: screens 1 to 4 of the Normandie deck "SMF et KAIROS", plus keys
    and provenance."""

    source: str
    carif_formation_numero: str
    carif_action_numero: str
    carif_session_numero: str
    session_numero_derived: bool
    dispensateur_siret: str
    dispensateur_siret_valid: bool
    dispensateur_raison_sociale: str | None
    mandataire_siret: str
    mandataire_siret_valid: bool
    mandataire_raison_sociale: str | None
    mandataire_numero_activite: str | None
    split_reason: str
    lheo_version: str
    # Screen 1: formation.
    intitule: str
    main_formacode: str | None
    formacodes: str | None
    objectif_general: int | None
    objectif: str | None
    resultats_attendus: str | None
    contenu: str | None
    # Screen 2: session.
    duration_hours: int | None
    hours_centre: int | None
    hours_entreprise: int | None
    rythme: str | None
    modalites_entrees_sorties: int | None
    recruitment_text: str | None
    etat_recrutement: int | None
    # periode-inscription: registration may stay open after the start (first/last day, raw).
    registration_debut: str | None
    registration_fin: str | None
    registration_raw: str | None
    debut: str | None
    debut_raw: str | None
    debut_precision: str | None
    fin: str | None
    fin_raw: str | None
    fin_precision: str | None
    # Screen 3: place of training (first place in columns, all in places_json).
    place_name: str | None
    place_address_lines: str | None
    place_postal_code: str | None
    place_city: str | None
    place_departement: str | None
    places_json: str
    # Screen 4: funding. The LHEO session's funded places, shared by its dispensateurs and
    # counted once (module docstring).
    funders_json: str
    funded_places_total: int | None
    funded_places_lheo: int | None
    funded_places_shared_by: int
    # The offer's page (first `url-action/urlweb`): where the Region's officer reads it.
    action_url: str | None
    # Text columns holding a placeholder (`-`, `Non renseigné`…; transforms/placeholders.py),
    # comma-separated: kept as written, counted as missing by the quality checks.
    placeholder_fields: str | None
    # Information meetings the offer announces without a date (`00000000` in
    # date-information, an ICO recrutement without a known date): no slot, a visible fact.
    undated_ico_count: int
    content_hash: str


class SlotRow(NamedTuple):
    """One LHEO recruitment slot of a KAIROS session (origin 'lheo')."""

    source: str
    carif_session_numero: str
    dispensateur_siret: str
    slot_key: str
    modality: str
    modality_code: int | None
    starts_on: str | None
    ends_on: str | None
    starts_raw: str | None
    ends_raw: str | None
    start_time: str | None
    end_time: str | None
    capacity: int | None
    address_lines: str | None
    postal_code: str | None
    city: str | None
    remote: bool | None
    url: str | None
    comment: str | None
    content_hash: str


@dataclass(frozen=True, slots=True)
class MappedFormation:
    formation: FormationRow
    actions: tuple[ActionRow, ...]
    sessions: tuple[SessionRow, ...]
    slots: tuple[SlotRow, ...]
    organisations: tuple[OrganisationRow, ...]


def row_hash(values: Sequence[object]) -> str:
    """Content hash of a row: repr of primitives is stable across runs and platforms."""
    return hashlib.blake2b(repr(tuple(values)).encode("utf-8"), digest_size=16).hexdigest()


def _hashed(cls: Callable[..., T], *values: object) -> T:
    """Build a row whose last field, content_hash, hashes all the others."""
    return cls(*values, row_hash(values))


def _extra_matches(extras: Iterable[Extra], matcher: GuichetUniqueMatcher) -> bool:
    for extra in extras:
        if matcher.info is not None and (extra.info or "").strip() != matcher.info:
            continue
        if extra.value.strip() == matcher.value:
            return True
    return False


def guichet_unique_matcher(
    formation: Formation, action: Action, matchers: Sequence[GuichetUniqueMatcher]
) -> GuichetUniqueMatcher | None:
    """The first configured matcher that puts this action under guichet unique, if any."""
    mandataire = normalise_siret(formation.responsable.siret)
    for matcher in matchers:
        if matcher.kind == "mandataire_siret" and mandataire == matcher.value:
            return matcher
        if matcher.kind == "action_numero_prefix" and (action.numero or "").startswith(
            matcher.value
        ):
            return matcher
        if matcher.kind == "extra" and (
            _extra_matches(formation.extras, matcher) or _extra_matches(action.extras, matcher)
        ):
            return matcher
    return None


def _date(value: LheoDate | None, *, last: bool) -> tuple[str | None, str | None, str | None]:
    """(ISO first/last day, raw text, precision) of an LHEO date."""
    if value is None:
        return None, None, None
    day = value.last_day if last else value.first_day
    return (day.isoformat() if day else None), value.raw, value.precision


def _lines(address: Address | None) -> str | None:
    return "\n".join(address.lines) if address and address.lines else None


def session_keys(action: Action, action_key: str) -> list[tuple[str, bool]]:
    """(key, derived?) of each session of an action.

    A session without `numero` gets `~<action key>:<debut raw>-<fin raw>`, with `#2`, `#3`…
    for siblings with the same dates: deterministic for the same document, and stable across
    snapshots as long as the action numero and the session dates stay the same.
    """
    keys: list[tuple[str, bool]] = []
    seen: dict[str, int] = {}
    for session in action.sessions:
        if session.numero:
            keys.append((session.numero, False))
            continue
        debut = session.period.debut.raw if session.period.debut else ""
        fin = session.period.fin.raw if session.period.fin else ""
        base = f"{DERIVED_PREFIX}{action_key}:{debut}-{fin}"
        seen[base] = seen.get(base, 0) + 1
        keys.append((base if seen[base] == 1 else f"{base}#{seen[base]}", True))
    return keys


def formation_key(formation: Formation) -> tuple[str, bool]:
    """The CARIF numero, else `~` + a hash of the responsable SIRET and the title."""
    if formation.numero:
        return formation.numero, False
    basis = f"{normalise_siret(formation.responsable.siret)}|{formation.intitule}"
    return DERIVED_PREFIX + hashlib.sha1(basis.encode(), usedforsecurity=False).hexdigest()[
        :16
    ], True


def _dated(day: LheoDate | None) -> bool:
    """A date a meeting can be held on: a day, a month or a year, not `00000000`."""
    return day is not None and day.first_day is not None


def _belongs_to(session: Session, action: Action, day: LheoDate) -> bool:
    """Whether an action-level information meeting on `day` recruits for `session`: the
    session has not started on that day (a meeting on the start day is fine), or, with
    permanent entries and exits, has not ended."""
    meeting = day.first_day
    if meeting is None:
        return False
    if action.modalites_entrees_sorties == 1:
        end = session.period.fin.last_day if session.period.fin else None
        return end is None or end >= meeting
    start = session.period.debut.first_day if session.period.debut else None
    return start is None or start >= meeting


def _slot_values(
    action: Action, session: Session
) -> tuple[list[tuple[Address | None, tuple[object, ...]]], int]:
    """The fields of a session's SlotRows after `dispensateur_siret` (hash excluded), each
    with the address that may make it one dispensateur's, and the number of information
    meetings announced without a date. They do not depend on the dispensateur, so they are
    computed once per LHEO session.

    `slot_key` is stable within (session, origin): `rec:<modality>:<debut raw>:<start time>`
    for a 2.3 recrutement, `info:<date raw>` for a date-information; a repeated key gets
    `#2`, `#3`… in document order. An ICO without a usable date (`00000000` — every
    date-information of the real 2.2 corpus is that — or an impossible date) is not a
    meeting anyone can book: no slot, only the count."""
    values: list[tuple[Address | None, tuple[object, ...]]] = []
    undated = 0
    used: dict[str, int] = {}

    def key(base: str) -> str:
        used[base] = used.get(base, 0) + 1
        return base if used[base] == 1 else f"{base}#{used[base]}"

    recruitment: Recruitment
    for recruitment in session.recrutements:
        debut = recruitment.period.debut if recruitment.period else None
        fin = recruitment.period.fin if recruitment.period else None
        if recruitment.modality == MODALITY_ICO and not _dated(debut):
            undated += 1
            continue
        starts_on, starts_raw, _ = _date(debut, last=False)
        ends_on, ends_raw, _ = _date(fin, last=True)
        address = recruitment.address
        values.append(
            (
                address,
                (
                    key(
                        f"rec:{recruitment.modality}:{starts_raw or ''}:"
                        f"{recruitment.start_time or ''}"
                    ),
                    MODALITY_NAMES.get(recruitment.modality, "other"),
                    recruitment.modality,
                    starts_on,
                    ends_on,
                    starts_raw,
                    ends_raw,
                    recruitment.start_time,
                    recruitment.end_time,
                    recruitment.places,
                    _lines(address),
                    address.postal_code if address else None,
                    address.city if address else None,
                    recruitment.remote,
                    recruitment.url,
                    recruitment.comment,
                ),
            )
        )
    info = action.information_address
    for day in action.information_dates:
        if not _dated(day):
            undated += 1
            continue
        if not _belongs_to(session, action, day):
            continue
        on, raw, _ = _date(day, last=False)
        values.append(
            (
                None,  # the action's meetings are every dispensateur's
                (
                    key(f"info:{day.raw}"),
                    "ico",
                    None,
                    on,
                    _date(day, last=True)[0],
                    raw,
                    raw,
                    None,
                    None,
                    None,
                    _lines(info),
                    info.postal_code if info else None,
                    info.city if info else None,
                    None,
                    None,
                    None,
                ),
            )
        )
    return values, undated


def _placeholder_fields(formation: Formation, place: tuple[object, ...]) -> str | None:
    """The screen 1 and 3 texts that hold a placeholder (transforms/placeholders.py) rather
    than nothing at all: the raw text stays in its column, the checks count it missing."""
    _name, _lines, postal_code, city, _departement = place
    found = [
        name
        for name, value in (
            ("intitule", formation.intitule),
            ("main_formacode", formation.main_formacode),
            ("objectif", formation.objectif),
            ("contenu", formation.contenu),
            ("place_postal_code", postal_code),
            ("place_city", city),
        )
        if isinstance(value, str) and value.strip() and is_placeholder(value)
    ]
    return ",".join(found) or None


def _dispensateur_columns(
    owner: Dispensateur, guichet: bool, owners: int
) -> tuple[bool, str, tuple[object, ...], str]:
    """The SessionRow fields that depend only on the dispensateur (and its action):
    SIRET validity, split reason, the shown place's columns (name, address lines, postal
    code, city, departement; transforms/dispensateurs.py `display_place`) and the places
    JSON."""
    reason = split_reason(owner, guichet_unique=guichet, owners=owners)
    shown = display_place(owner.places)
    address = shown.get("address") if shown else None
    address_map = address if isinstance(address, dict) else {}
    lines = address_map.get("lines")
    place = (
        shown.get("name") if shown else None,
        "\n".join(str(x) for x in lines) if isinstance(lines, list) and lines else None,
        address_map.get("postal_code"),
        address_map.get("city"),
        address_map.get("departement"),
    )
    places_json = json.dumps(list(owner.places), ensure_ascii=False, separators=(",", ":"))
    return siret_is_valid(owner.siret), reason, place, places_json


def _registration(session: Session) -> tuple[str | None, str | None, str | None]:
    """`periode-inscription` as (first day, last day, raw `debut-fin`)."""
    period = session.registration_period
    if period is None:
        return None, None, None
    debut, debut_raw, _ = _date(period.debut, last=False)
    fin, fin_raw, _ = _date(period.fin, last=True)
    return debut, fin, f"{debut_raw or ''}-{fin_raw or ''}"


def map_formation(formation: Formation, config: SourceConfig) -> MappedFormation:
    """All rows of one valid formation for source `config.name`."""
    source = config.name
    responsable = formation.responsable
    mandataire = normalise_siret(responsable.siret)
    mandataire_valid = siret_is_valid(mandataire)
    f_key, f_derived = formation_key(formation)
    version = formation.lheo_version

    organisations: dict[str, OrganisationRow] = {}
    if mandataire:
        organisations[mandataire] = _hashed(
            OrganisationRow,
            mandataire,
            mandataire_valid,
            responsable.raison_sociale,
            responsable.nom,
            responsable.numero_activite,
        )
    actions: list[ActionRow] = []
    sessions: list[SessionRow] = []
    slots: list[SlotRow] = []
    formacodes = ",".join(formation.formacodes) or None

    for index, action in enumerate(formation.actions, start=1):
        a_key, a_derived = (action.numero, False) if action.numero else (f"{f_key}:A{index}", True)
        guichet = guichet_unique_matcher(formation, action, config.guichet_unique) is not None
        actions.append(_hashed(ActionRow, source, a_key, f_key, a_derived, guichet))
        for formateur in action.formateurs:
            siret = normalise_siret(formateur.siret)
            if siret and siret not in organisations:
                organisations[siret] = _hashed(
                    OrganisationRow,
                    siret,
                    siret_is_valid(siret),
                    formateur.raison_sociale,
                    None,
                    None,
                )
        owners = dispensateurs(formation, action, guichet_unique=guichet)
        funders = [{"code": f.code, "places": f.places} for f in action.funders]
        funded = [f.places for f in action.funders if f.places is not None]
        funders_json = json.dumps(funders, ensure_ascii=False, separators=(",", ":"))
        funded_lheo = sum(funded) if funded else None
        # What a KAIROS session takes from its dispensateur (reason, first place, places
        # JSON) is the same for every LHEO session of the action: computed once here.
        delivered = [_dispensateur_columns(owner, guichet, len(owners)) for owner in owners]
        for session, (s_key, s_derived) in zip(
            action.sessions, session_keys(action, a_key), strict=True
        ):
            debut, debut_raw, debut_precision = _date(session.period.debut, last=False)
            fin, fin_raw, fin_precision = _date(session.period.fin, last=True)
            registration = _registration(session)
            slot_values, undated_icos = _slot_values(action, session)
            slot_owners = [owner_of(address, owners) for address, _ in slot_values]
            for rank, (owner, (siret_valid, reason, place, places_json)) in enumerate(
                zip(owners, delivered, strict=True)
            ):
                sessions.append(
                    _hashed(
                        SessionRow,
                        source,
                        f_key,
                        a_key,
                        s_key,
                        s_derived,
                        owner.siret,
                        siret_valid,
                        owner.raison_sociale,
                        mandataire,
                        mandataire_valid,
                        responsable.raison_sociale,
                        responsable.numero_activite,
                        reason,
                        version,
                        formation.intitule,
                        formation.main_formacode,
                        formacodes,
                        formation.objectif_general,
                        formation.objectif,
                        formation.resultats_attendus,
                        formation.contenu,
                        action.duration_hours,
                        action.hours_centre,
                        action.hours_entreprise,
                        action.rythme,
                        action.modalites_entrees_sorties,
                        action.recruitment_text,
                        session.etat_recrutement,
                        *registration,
                        debut,
                        debut_raw,
                        debut_precision,
                        fin,
                        fin_raw,
                        fin_precision,
                        *place,
                        places_json,
                        funders_json,
                        # Counted once: on the first dispensateur's row (module docstring).
                        funded_lheo if rank == 0 or funded_lheo is None else 0,
                        funded_lheo,
                        len(owners),
                        action.urls[0] if action.urls else None,
                        _placeholder_fields(formation, place),
                        undated_icos,
                    )
                )
                slots.extend(
                    _hashed(SlotRow, source, s_key, owner.siret, *values)
                    for (_address, values), belongs in zip(slot_values, slot_owners, strict=True)
                    if belongs is None or belongs == owner.siret
                )

    formation_row = _hashed(
        FormationRow,
        source,
        f_key,
        f_derived,
        version,
        formation.intitule,
        formation.main_formacode,
        mandataire,
    )
    return MappedFormation(
        formation_row, tuple(actions), tuple(sessions), tuple(slots), tuple(organisations.values())
    )
