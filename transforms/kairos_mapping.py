"""LHEO `Formation` records → KAIROS session rows and recruitment slot rows (pure functions).

The rules come from DOMAIN.md, "Mandataire and dispensateur" (seeds 000 "Saisir ma
formation et KAIROS" and 002 "Zoom sur #Avenir"):

* "Un OF dispensateur = un SIRET = un compte Kairos": one KAIROS session per dispensateur
  SIRET of an LHEO session. The dispensateurs of an action are, in order:
  1. its `organisme-formateur` SIRETs (deduplicated, document order);
  2. the SIRET of every 2.3 `lieu-de-formation` that carries `SIRET-lieu-formation` and is
     not already one of them (that establishment has its own KAIROS account);
  3. when the action names no `organisme-formateur`, the `organisme-formation-responsable`
     — only if some place has no SIRET or nothing else tells who delivers.
* The mandataire is always the `organisme-formation-responsable`.
* A place with a SIRET attaches to that dispensateur. A place without SIRET "belongs to the
  dispensateur site … to which it is administratively attached" (seed 000): LHEO does not
  say which co-contractor uses an unmarked site, so it is listed under every formateur of
  the action (under the responsable when there is none).
* Guichet unique (configured per source, pipelines/config.py): all sessions stay under the
  mandataire's SIRET; the formateurs are kept as detached places of that one session
  ("les OF dispensateurs … comme des lieux délocalisés de formation", seed 002).

`split_reason` says why a KAIROS session looks the way it does: `guichet_unique`,
`co_contracting` (the LHEO session gave several KAIROS sessions), `detached_place` (one
KAIROS session carrying a 2.3 place without a SIRET of its own — 2.2 has no such field, so
the absence means nothing there) or `single`.

Slots: 2.3 `session/recrutement` modality 9 → `ico`, 8 → `rdvi`, 7 → `candidature`, any
other modality → `other` (kept as information); the action's `date-information` (2.2, and
2.3 where it still exists) → `ico` slots of every session of the action, at the action's
`adresse-information`.

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

from pipelines.config import GuichetUniqueMatcher, SourceConfig
from transforms.departement import derive_departement
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
    TrainingPlace,
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


def normalise_siret(siret: str | None) -> str:
    """Stripped text; blank and missing become '' (kept: the session still loads)."""
    return (siret or "").strip()


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
    """One KAIROS session: screens 1 to 4 of seed 000, plus keys and provenance."""

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
    # Screen 4: funding.
    funders_json: str
    funded_places_total: int | None
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


@dataclass(frozen=True, slots=True)
class Dispensateur:
    """Who delivers an action for KAIROS, and the training places listed under it."""

    siret: str
    raison_sociale: str | None
    places: tuple[dict[str, object], ...]
    detached: bool  # carries a 2.3 place without SIRET


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


def _address_json(address: Address | None) -> dict[str, object] | None:
    if address is None:
        return None
    departement, found_in = derive_departement(
        address.departement, address.insee_commune, address.postal_code
    )
    return {
        "lines": list(address.lines),
        "postal_code": address.postal_code,
        "city": address.city,
        "departement": departement,  # the element, else derived (transforms/departement.py)
        "departement_from": found_in,
        "insee_commune": address.insee_commune,
    }


def _place_json(place: TrainingPlace, attached_by: str, *, detached: bool) -> dict[str, object]:
    coordinates = place.coordinates
    address = coordinates.address
    return {
        "kind": "lieu",
        "name": coordinates.nom or (address.denomination if address else None),
        "siret": normalise_siret(place.siret) or None,
        "attached_by": attached_by,  # 'siret' | 'default' | 'guichet_unique'
        "detached": detached,
        "address": _address_json(address),
    }


def dispensateurs(
    formation: Formation, action: Action, *, guichet_unique: bool
) -> list[Dispensateur]:
    """The KAIROS dispensateurs of an action, each with its training places (rules above)."""
    responsable = formation.responsable
    mandataire = normalise_siret(responsable.siret)
    v23 = formation.lheo_version == "2.3"
    if guichet_unique:
        # Everything under the mandataire; co-contractors become detached places (seed 002).
        places: list[dict[str, object]] = [
            {
                "kind": "formateur",
                "name": f.raison_sociale,
                "siret": normalise_siret(f.siret) or None,
                "attached_by": "guichet_unique",
                "detached": True,
            }
            for f in action.formateurs
            if normalise_siret(f.siret) != mandataire
        ]
        places += [_place_json(p, "guichet_unique", detached=True) for p in action.places]
        return [Dispensateur(mandataire, responsable.raison_sociale, tuple(places), False)]

    order: list[str] = []
    names: dict[str, str | None] = {}
    listed: dict[str, list[dict[str, object]]] = {}
    detached: dict[str, bool] = {}

    def add(siret: str, name: str | None) -> None:
        if siret not in listed:
            order.append(siret)
            names[siret] = name
            listed[siret] = []
            detached[siret] = False

    for formateur in action.formateurs:
        add(normalise_siret(formateur.siret), formateur.raison_sociale)
    formateurs = list(order)
    unmarked: list[TrainingPlace] = []
    for place in action.places:
        siret = normalise_siret(place.siret)
        if siret:
            add(siret, place.coordinates.nom)
            listed[siret].append(_place_json(place, "siret", detached=False))
        else:
            unmarked.append(place)
    if unmarked or not order:
        owners = formateurs or [mandataire]
        if not formateurs:
            add(mandataire, responsable.raison_sociale)
        for place in unmarked:
            for owner in owners:
                listed[owner].append(_place_json(place, "default", detached=v23))
                detached[owner] = detached[owner] or v23
    return [Dispensateur(s, names[s], tuple(listed[s]), detached[s]) for s in order]


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


def _slot_values(action: Action, session: Session) -> tuple[list[tuple[object, ...]], int]:
    """The fields of a session's SlotRows after `dispensateur_siret` (hash excluded), and
    the number of information meetings announced without a date. They do not depend on the
    dispensateur, so they are computed once per LHEO session.

    `slot_key` is stable within (session, origin): `rec:<modality>:<debut raw>:<start time>`
    for a 2.3 recrutement, `info:<date raw>` for a date-information; a repeated key gets
    `#2`, `#3`… in document order. An ICO without a usable date (`00000000` — every
    date-information of the real 2.2 corpus is that — or an impossible date) is not a
    meeting anyone can book: no slot, only the count."""
    values: list[tuple[object, ...]] = []
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
                key(
                    f"rec:{recruitment.modality}:{starts_raw or ''}:{recruitment.start_time or ''}"
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
            )
        )
    info = action.information_address
    for day in action.information_dates:
        if not _dated(day):
            undated += 1
            continue
        on, raw, _ = _date(day, last=False)
        values.append(
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
    SIRET validity, split reason, the first place's columns (name, address lines, postal
    code, city, departement) and the places JSON."""
    if guichet:
        reason = "guichet_unique"
    elif owners > 1:
        reason = "co_contracting"
    elif owner.detached:
        reason = "detached_place"
    else:
        reason = "single"
    first = owner.places[0] if owner.places else None
    address = first.get("address") if first else None
    address_map = address if isinstance(address, dict) else {}
    lines = address_map.get("lines")
    place = (
        first.get("name") if first else None,
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
        funded_total = sum(funded) if funded else None
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
            for owner, (siret_valid, reason, place, places_json) in zip(
                owners, delivered, strict=True
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
                        funded_total,
                        action.urls[0] if action.urls else None,
                        _placeholder_fields(formation, place),
                        undated_icos,
                    )
                )
                slots.extend(
                    _hashed(SlotRow, source, s_key, owner.siret, *values) for values in slot_values
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
