"""Who delivers an LHEO action for KAIROS, where, and which recruitment modality is whose.

The split rules of DOMAIN.md, "Mandataire and dispensateur" (Normandie deck "SMF et
KAIROS"; "Rappel : les obligations légales" deck, "Zoom sur #Avenir"):

* "Un OF dispensateur = un SIRET = un compte Kairos": the dispensateurs of an action are
  its `organisme-formateur` SIRETs (deduplicated, document order), then the SIRET of every
  2.3 `lieu-de-formation` carrying `SIRET-lieu-formation` not already listed (that
  establishment has its own KAIROS account); with no `organisme-formateur`, the
  `organisme-formation-responsable` — only if some place has nobody else or nothing else
  tells who delivers.
* A place with a SIRET is one of its dispensateur's own sites (`attached_by: siret`). A place
  without SIRET "belongs to the dispensateur site … to which it is administratively
  attached": when its postal code and city are those of one dispensateur's own site, it is
  that dispensateur's (`attached_by: address`); otherwise LHEO does not say which
  co-contractor uses it, and it is listed under every formateur (under the responsable when
  there is none: `attached_by: default`). A 2.3 `recrutement` whose address is one
  dispensateur's own site belongs to that dispensateur's KAIROS session only (`owner_of`).
* Guichet unique (configured per source): one KAIROS session under the mandataire's SIRET;
  co-contractors and places are listed as detached places ("les OF dispensateurs … comme
  des lieux délocalisés de formation").
* A place is *detached* (split reason `detached_place`) only when it really is: the
  dispensateur lists several places, or its one place is another site than its own (the
  responsable's own address is known from `coordonnees-organisme`; a formateur's is not, so
  its one place is taken as its own).
* The place KAIROS screen 3 shows (`display_place`): the principal place
  (`lieu-de-formation tag="principal"`), else the first place that has an address — never a
  co-contractor listed without an address.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from transforms.departement import derive_departement
from transforms.placeholders import is_placeholder
from transforms.records import Action, Address, Formation, TrainingPlace

AddressKey = tuple[str, str]


def normalise_siret(siret: str | None) -> str:
    """Stripped text; blank and missing become '' (kept: the session still loads)."""
    return (siret or "").strip()


def address_key(address: Address | None) -> AddressKey | None:
    """(postal code, city) compared without spaces, accents, case or punctuation; None when
    either is missing or a placeholder."""
    if address is None or is_placeholder(address.postal_code) or is_placeholder(address.city):
        return None
    assert address.postal_code is not None and address.city is not None
    city = unicodedata.normalize("NFKD", address.city.upper())
    city = "".join(c if c.isalnum() else " " for c in city if not unicodedata.combining(c))
    return address.postal_code.replace(" ", ""), " ".join(city.split())


@dataclass(frozen=True, slots=True)
class Dispensateur:
    """Who delivers an action for KAIROS, the training places listed under it, and the
    address keys of its own sites (the places attached to it by their SIRET)."""

    siret: str
    raison_sociale: str | None
    places: tuple[dict[str, object], ...]
    detached: bool
    sites: frozenset[AddressKey] = frozenset()


def address_json(address: Address | None) -> dict[str, object] | None:
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


def place_json(place: TrainingPlace, attached_by: str, *, detached: bool) -> dict[str, object]:
    coordinates = place.coordinates
    address = coordinates.address
    return {
        "kind": "lieu",
        "name": coordinates.nom or (address.denomination if address else None),
        "siret": normalise_siret(place.siret) or None,
        "attached_by": attached_by,  # 'siret' | 'address' | 'default' | 'guichet_unique'
        "detached": detached,
        "principal": place.principal,
        "address": address_json(address),
    }


def dispensateurs(
    formation: Formation, action: Action, *, guichet_unique: bool
) -> list[Dispensateur]:
    """The KAIROS dispensateurs of an action, each with its training places (rules above)."""
    responsable = formation.responsable
    mandataire = normalise_siret(responsable.siret)
    if guichet_unique:
        # Everything under the mandataire; co-contractors become detached places.
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
        places += [place_json(p, "guichet_unique", detached=True) for p in action.places]
        return [Dispensateur(mandataire, responsable.raison_sociale, tuple(places), False)]

    order: list[str] = []
    names: dict[str, str | None] = {}
    listed: dict[str, list[tuple[TrainingPlace, str]]] = {}
    sites: dict[str, set[AddressKey]] = {}

    def add(siret: str, name: str | None) -> None:
        if siret not in listed:
            order.append(siret)
            names[siret] = name
            listed[siret] = []
            sites[siret] = set()

    for formateur in action.formateurs:
        add(normalise_siret(formateur.siret), formateur.raison_sociale)
    formateurs = list(order)
    unmarked: list[TrainingPlace] = []
    for place in action.places:
        siret = normalise_siret(place.siret)
        if siret:
            add(siret, place.coordinates.nom)
            listed[siret].append((place, "siret"))
            key = address_key(place.coordinates.address)
            if key is not None:
                sites[siret].add(key)
        else:
            unmarked.append(place)
    unowned: list[TrainingPlace] = []
    for place in unmarked:
        key = address_key(place.coordinates.address)
        matching = [s for s in order if key is not None and key in sites[s]]
        if len(matching) == 1:
            listed[matching[0]].append((place, "address"))
        else:
            unowned.append(place)
    if unowned or not order:
        if not formateurs:
            add(mandataire, responsable.raison_sociale)
        for place in unowned:
            for owner in formateurs or [mandataire]:
                listed[owner].append((place, "default"))
    own_site = address_key(responsable.address)
    result = []
    for siret in order:
        held = listed[siret]
        detached = len(held) > 1 or (
            len(held) == 1
            and held[0][1] == "default"
            and siret == mandataire
            and own_site is not None
            and address_key(held[0][0].coordinates.address) not in (None, own_site)
        )
        result.append(
            Dispensateur(
                siret,
                names[siret],
                tuple(place_json(p, how, detached=detached) for p, how in held),
                detached,
                frozenset(sites[siret]),
            )
        )
    return result


def owner_of(address: Address | None, owners: Sequence[Dispensateur]) -> str | None:
    """The one dispensateur whose own site is at `address` (postal code and city), or None
    when none or several are: a recruitment modality there is that dispensateur's only."""
    key = address_key(address)
    if key is None or len(owners) < 2:
        return None
    matching = [owner.siret for owner in owners if key in owner.sites]
    return matching[0] if len(matching) == 1 else None


def display_place(places: Sequence[dict[str, object]]) -> dict[str, object] | None:
    """The place KAIROS screen 3 shows: the principal place, else the first place of
    training with an address (postal code or city), else the first place; co-contractors
    listed as detached places (guichet unique) are never shown as the place."""
    lieux = [p for p in places if p.get("kind") == "lieu"]
    for place in lieux:
        if place.get("principal"):
            return place
    for place in lieux:
        address = place.get("address")
        if isinstance(address, dict) and not (
            is_placeholder(_text(address.get("postal_code")))
            and is_placeholder(_text(address.get("city")))
        ):
            return place
    return lieux[0] if lieux else None


def split_reason(owner: Dispensateur, *, guichet_unique: bool, owners: int) -> str:
    """Why the KAIROS session looks the way it does (docs/data-model.md, "Split rules")."""
    if guichet_unique:
        return "guichet_unique"
    if owners > 1:
        return "co_contracting"
    return "detached_place" if owner.detached else "single"


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
