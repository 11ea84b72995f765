"""Synthetic LHEO offers: realistic, seeded, streamed to disk, optionally with faults.

`write_offers` writes an LHEO 2.2 or 2.3 document (`lheo/offres/formation*`) that looks
like a CARIF-OREF export: French titles and contents from small built-in word lists, a
recurring pool of training organisations (Luhn-valid SIRETs, 11-character N° DA),
co-contracting, detached training places, permanent entries vs fixed dates, recruitment
states, funders, information meetings (2.2 `date-information`, 2.3 `session/recrutement`
with the KAIROS modalities 7, 8 and 9, and sessions with none at all: the quality problem
the Region cares about most) and "guichet unique" #Avenir programmes (DOMAIN.md; Normandie
deck "SMF et KAIROS", obligations deck).

Properties the rest of the project relies on:

* **Deterministic**: the same arguments give a byte-identical file. Every formation draws
  from its own `random.Random` seeded with (seed, rank), the organisation pool from
  (seed, "organisations"), the fault plan from (seed, "faults"); the clock is never read
  and gzip output is written with `mtime=0` and no file name in its header. Formation
  *n* is therefore the same whatever the total count or `invalid_rate`, except for the
  one fault injected into it when it is chosen.
* **Streaming**: formations are built one at a time as lxml elements, written through
  `lxml.etree.xmlfile` and dropped, so memory does not grow with the file size.
* **Valid** against the published LHEO schemas (and the project's own,
  `lheo_schemas/`) when `invalid_rate` is 0. With `invalid_rate` R > 0, round(R x N)
  formations (at least one) each get exactly one schema-breaking fault, cycling through
  `FAULT_KINDS`; their numeros are returned in `GenerationStats.invalid_numeros`.

The schema shapes the variety: in 2.2 an action has exactly one `lieu-de-formation`
(no SIRET) and at most one `organisme-formateur`, so co-contracting shows as several
actions of one formation with different formateurs; 2.3 allows several formateurs and
training places (with or without `SIRET-lieu-formation`) per action, and
`session/recrutement` blocks.
"""

from __future__ import annotations

import datetime
import gzip
import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

from lxml import etree
from stdnum import luhn

__all__ = [
    "FAULT_KINDS",
    "LHEO_NAMESPACES",
    "GenerationStats",
    "write_offers",
]

LHEO_NAMESPACES: Final[dict[str, str]] = {
    "2.2": "http://www.lheo.org/2.2",
    "2.3": "http://lheo.gouv.fr/2.3",
}

# The kinds of schema-breaking faults, injected in this order (cycling) into the chosen
# formations sorted by rank.
FAULT_KINDS: Final[tuple[str, ...]] = (
    "missing-mandatory-element",
    "siret-length",
    "text-too-long",
    "bad-dictionary-code",
    "bad-date",
    "unknown-element",
    "wrong-element-order",
)

_XML_DECLARATION: Final = b'<?xml version="1.0" encoding="utf-8"?>\n'
_POOL_SIZE: Final = 160  # organisations; the first _RESPONSABLES may be mandataires
_RESPONSABLES: Final = 60
_FORMACODE_REF: Final = "V12"


@dataclass(frozen=True)
class GenerationStats:
    """What `write_offers` wrote. `bytes_written` is the size of the file on disk
    (compressed size for a `.gz` destination)."""

    formations: int
    actions: int
    sessions: int
    invalid_numeros: tuple[str, ...]  # formation numeros into which a fault was injected
    bytes_written: int


# --------------------------------------------------------------------------------------
# Built-in word lists (no external data)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Metier:
    label: str  # used in titles: "Titre professionnel {label}"
    certification: str  # "" when the training is not certifying
    formacodes: tuple[str, ...]  # main first
    nsf: str
    romes: tuple[str, ...]
    niveau_sortie: int  # European level (3 CAP, 4 bac, 5 BTS); 1 = no specific level
    activities: tuple[str, ...]


# The word lists are data, not code: samples/generator_tables.json.
_TABLES: Final[dict[str, Any]] = json.loads(
    Path(__file__).with_name("generator_tables.json").read_text(encoding="utf-8")
)
_METIERS: Final[tuple[_Metier, ...]] = tuple(
    _Metier(
        **{
            **metier,
            "formacodes": tuple(metier["formacodes"]),
            "romes": tuple(metier["romes"]),
            "activities": tuple(metier["activities"]),
        }
    )
    for metier in _TABLES["metiers"]
)

_NON_CERT_PREFIXES: Final = tuple(_TABLES["non_cert_prefixes"])
_TITLE_SUFFIXES: Final = tuple(_TABLES["title_suffixes"])
_GENERIC_MODULES: Final = tuple(_TABLES["generic_modules"])
_RYTHMES: Final = tuple(_TABLES["rythmes"])
_CONDITIONS: Final = tuple(_TABLES["conditions"])
_ALTERNANCES: Final = tuple(_TABLES["alternances"])
_MODALITES_RECRUTEMENT_22: Final = (
    "Information collective puis entretien individuel",
    "Tests de positionnement et entretien de motivation",
    "Dossier de candidature, CV et lettre de motivation",
    "Entretien individuel sur rendez-vous",
)
_MODALITES_INSCRIPTION: Final = tuple(_TABLES["modalites_inscription"])
_PRENOMS: Final = tuple(_TABLES["prenoms"])
_NOMS: Final = tuple(_TABLES["noms"])
_ORG_KINDS: Final = tuple(_TABLES["org_kinds"])
_ORG_NAMES: Final = tuple(_TABLES["org_names"])
_LEGAL_FORMS: Final = tuple(_TABLES["legal_forms"])
_STREETS: Final = tuple(_TABLES["streets"])
_DETACHED_PLACES: Final = tuple(_TABLES["detached_places"])


@dataclass(frozen=True, slots=True)
class _Town:
    name: str
    codepostal: str
    insee: str
    departement: str
    region: str  # INSEE region code: 28 Normandie, 76 Occitanie
    latitude: float
    longitude: float
    phone_prefix: str  # ARCEP numbers reserved for fiction


_TOWNS: Final[tuple[_Town, ...]] = tuple(
    _Town(name, cp, insee, dep, region, lat, lon, "02 61 91" if region == "28" else "05 36 49")
    for name, cp, insee, dep, region, lat, lon in _TABLES["towns"]
)

# dict-financeurs, weighted towards the usual funders of job seekers' training.
_FINANCEURS_22: Final = tuple(_TABLES["financeurs_22"])
_FINANCEURS_23: Final = (*_FINANCEURS_22, "17", "18", "19", "20")
_PUBLICS: Final = tuple(_TABLES["publics"])


@dataclass(frozen=True, slots=True)
class _Organisation:
    siret: str
    numero_activite: str
    nom: str
    raison_sociale: str
    town: _Town
    street: str
    contact: tuple[str, str, str]  # civilité, prénom, nom
    courriel: str
    telephone: str
    web: str


def _luhn_number(rng: random.Random, prefix: str, length: int) -> str:
    """`prefix` + random digits + a Luhn check digit, `length` digits in all."""
    body = prefix + "".join(rng.choice("0123456789") for _ in range(length - 1 - len(prefix)))
    return body + luhn.calc_check_digit(body)


def _siret(rng: random.Random) -> str:
    """A SIRET whose SIREN (9 digits) and whole number (14 digits) are both Luhn-valid."""
    siren = _luhn_number(rng, rng.choice("123456789"), 9)
    return _luhn_number(rng, siren, 14)


def _phone(rng: random.Random, prefix: str) -> str:
    return f"{prefix} {rng.randrange(100):02d} {rng.randrange(100):02d}"


def _organisation_pool(seed: int) -> tuple[_Organisation, ...]:
    rng = random.Random(f"{seed}:organisations")  # noqa: S311 - test data, not crypto
    pool: list[_Organisation] = []
    seen: set[str] = set()
    while len(pool) < _POOL_SIZE:
        siret = _siret(rng)
        if siret in seen:
            continue
        seen.add(siret)
        town = rng.choice(_TOWNS)
        kind = rng.choice(_ORG_KINDS)
        name = rng.choice(_ORG_NAMES)
        nom = f"{kind} {name}" if rng.random() < 0.6 else f"{kind} {name} {town.name}"
        nom = nom[:250]
        legal = rng.choice(_LEGAL_FORMS)
        raison = f"{legal} {kind.upper()} {name.upper()}"[:250]
        prenom, nom_contact = rng.choice(_PRENOMS), rng.choice(_NOMS)
        civilite = rng.choice(("Madame", "Monsieur"))
        slug = f"of{len(pool) + 1:03d}"
        pool.append(
            _Organisation(
                siret=siret,
                # N° DA: 2-digit region code + department + sequence, 11 characters.
                numero_activite=f"{town.region}{town.departement[:2]}{rng.randrange(10**7):07d}",
                nom=nom,
                raison_sociale=raison,
                town=town,
                street=f"{rng.randrange(1, 180)} {rng.choice(_STREETS)}",
                contact=(civilite, prenom, nom_contact),
                courriel=f"contact@{slug}.example.org",
                telephone=_phone(rng, town.phone_prefix),
                web=f"https://www.{slug}.example.org",
            )
        )
    return tuple(pool)


def _lheo_date(day: datetime.date) -> str:
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


def _month_only(day: datetime.date) -> str:
    return f"{day.year:04d}{day.month:02d}00"


def _hour(rng: random.Random, morning: bool) -> tuple[str, str]:
    start = rng.choice((9, 10) if morning else (13, 14))
    minutes = rng.choice(("00", "30"))
    return f"{start}h{minutes}", f"{start + rng.choice((1, 2, 3))}h{minutes}"


# --------------------------------------------------------------------------------------
# Building one formation
# --------------------------------------------------------------------------------------


_Element = etree._Element
_SubElement = etree.SubElement


class _QualifiedTags(dict[str, str]):
    """Local name → `{namespace}name`, computed once per name."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def __missing__(self, local: str) -> str:
        qualified = self[local] = self.prefix + local
        return qualified


@dataclass(slots=True)
class _Place:
    """A training place: coordinates and, in 2.3, maybe the SIRET it is attached to."""

    nom: str
    town: _Town
    street: str
    siret: str | None


class _FormationBuilder:
    """Builds `formation` elements for one document (version, seed, reference date)."""

    def __init__(self, version: str, seed: int, reference_date: datetime.date) -> None:
        self.version = version
        self.v23 = version == "2.3"
        self.ns = LHEO_NAMESPACES[version]
        self.prefix = "{" + self.ns + "}"
        self.nsmap = {None: self.ns}
        self.seed = seed
        self.reference = reference_date
        self.pool = _organisation_pool(seed)
        self.financeurs = _FINANCEURS_23 if self.v23 else _FINANCEURS_22
        self._tags = _QualifiedTags(self.prefix)

    # -- element helpers ---------------------------------------------------------------

    def q(self, tag: str) -> str:
        """`{namespace}tag`."""
        return self._tags[tag]

    def sub(self, parent: _Element, tag: str, text: str | None = None) -> _Element:
        element = _SubElement(parent, self._tags[tag])
        if text is not None:
            element.text = text
        return element

    def adresse(
        self,
        parent: _Element,
        town: _Town,
        street: str,
        denomination: str | None = None,
        *,
        full: bool = True,
    ) -> None:
        """An `adresse`; `full` adds département, INSEE code, region, country, geolocation."""
        adresse = self.sub(parent, "adresse")
        if denomination is not None and self.v23:
            self.sub(adresse, "denomination", denomination[:255])
        self.sub(adresse, "ligne", street[:50])
        self.sub(adresse, "codepostal", town.codepostal)
        self.sub(adresse, "ville", town.name)
        if full:
            self.sub(adresse, "departement", town.departement)
            self.sub(adresse, "code-INSEE-commune", town.insee)
            self.sub(adresse, "region", town.region)
            self.sub(adresse, "pays", "FR")
            geo = self.sub(adresse, "geolocalisation")
            self.sub(geo, "latitude", f"{town.latitude:.4f}")
            self.sub(geo, "longitude", f"{town.longitude:.4f}")

    def coordonnees_contact(
        self, parent: _Element, rng: random.Random, org: _Organisation, with_address: bool
    ) -> None:
        coordonnees = self.sub(parent, "coordonnees")
        civilite, prenom, nom = org.contact
        if rng.random() < 0.3:  # another person of the same organisation
            civilite = rng.choice(("Madame", "Monsieur"))
            prenom, nom = rng.choice(_PRENOMS), rng.choice(_NOMS)
        self.sub(coordonnees, "civilite", civilite)
        self.sub(coordonnees, "nom", nom)
        self.sub(coordonnees, "prenom", prenom)
        if with_address:
            self.adresse(coordonnees, org.town, org.street, full=False)
        telfixe = self.sub(coordonnees, "telfixe")
        self.sub(telfixe, "numtel", org.telephone)
        if rng.random() < 0.25:
            portable = self.sub(coordonnees, "portable")
            self.sub(portable, "numtel", _phone(rng, "06 39 98"))
        self.sub(coordonnees, "courriel", org.courriel)

    def contact(self, parent: _Element, tag: str, rng: random.Random, org: _Organisation) -> None:
        """contact-formation / contact-organisme / contact-formateur."""
        element = self.sub(parent, tag)
        if self.v23 and rng.random() < 0.5:
            self.sub(element, "type-contact", rng.choice(("3", "4", "5", "1")))
        self.coordonnees_contact(element, rng, org, with_address=rng.random() < 0.5)

    # -- formation ---------------------------------------------------------------------

    def formation(self, rank: int) -> tuple[_Element, int, int]:
        """Formation number `rank` (1-based): its element, action and session counts."""
        rng = random.Random(f"{self.seed}:{rank}")  # noqa: S311 - test data, not crypto
        metier = rng.choice(_METIERS)
        avenir = rng.random() < 0.05
        avenir_on_formation = avenir and rng.random() < 0.6
        responsable = self.pool[min(int(_RESPONSABLES * rng.random() ** 1.6), _RESPONSABLES - 1)]

        formation = etree.Element(self.q("formation"), nsmap=self.nsmap)  # type: ignore[arg-type]
        formation.set("numero", f"F{self.seed}-{rank}")

        domaine = self.sub(formation, "domaine-formation")
        main_code = self.sub(domaine, "code-FORMACODE", metier.formacodes[0])
        main_code.set("ref", _FORMACODE_REF)
        if rng.random() < 0.4:
            main_code.set("tag", "principal")
        for code in metier.formacodes[1 : 1 + rng.randrange(len(metier.formacodes))]:
            self.sub(domaine, "code-FORMACODE", code).set("ref", _FORMACODE_REF)
        self.sub(domaine, "code-NSF", metier.nsf)
        for rome in metier.romes:
            self.sub(domaine, "code-ROME", rome)

        certifying = bool(metier.certification) and not avenir and rng.random() < 0.85
        if avenir:
            title = f"Parcours #Avenir - {metier.label}"
        elif certifying:
            title = f"{metier.certification} {metier.label}"
        elif not metier.certification:
            title = metier.label
        else:
            title = f"{rng.choice(_NON_CERT_PREFIXES)} {metier.label.lower()}"
        self.sub(formation, "intitule-formation", (title + rng.choice(_TITLE_SUFFIXES))[:255])
        first, second, third = rng.sample(metier.activities, 3)
        self.sub(
            formation,
            "objectif-formation",
            f"Acquérir les compétences nécessaires pour {first} et {second}. "
            f"À l'issue de la formation, le stagiaire sait {third}.",
        )
        rncp = str(rng.randrange(30000, 40000))
        self.sub(
            formation,
            "resultats-attendus",
            f"{metier.certification} {metier.label} (RNCP{rncp}), totalité ou blocs de compétences."
            if certifying
            else "Attestation de compétences et validation du projet professionnel.",
        )
        modules = [a[0].upper() + a[1:] for a in (first, second, third)]
        modules += rng.sample(_GENERIC_MODULES, rng.randint(1, 4))
        contenu = " ".join(f"Module {i} : {m}." for i, m in enumerate(modules, 1))
        self.sub(formation, "contenu-formation", contenu[:3000])
        self.sub(formation, "certifiante", "1" if certifying else "0")
        for _ in range(1 + (self.v23 and rng.random() < 0.2)):
            self.contact(formation, "contact-formation", rng, responsable)
        self.sub(formation, "parcours-de-formation", rng.choice("1112234"))
        # dict-niveaux: 0 not given, 1 no specific level; then 2.2 uses the old French
        # levels (4 = V/CAP, 5 = IV/bac, 6 = III/BTS) and 2.3 10 + the European level.
        niveau_entree = rng.choice((0, 1, 1, 1, 3, 4))
        if niveau_entree > 1:
            niveau_entree += 10 if self.v23 else 1
        self.sub(formation, "code-niveau-entree", str(niveau_entree))
        if rng.random() < 0.9:
            if certifying:
                objectif = "6"
            elif metier.formacodes[0] == "15041":
                objectif = "9"  # (re)mobilisation, projet professionnel
            elif metier.formacodes[0] == "32047":
                objectif = "4"  # création d'entreprise
            elif metier.niveau_sortie == 1:
                objectif = "5"
            else:
                objectif = rng.choice("783")
            self.sub(formation, "objectif-general-formation", objectif)
        if certifying:
            certification = self.sub(formation, "certification")
            self.sub(certification, "code-RNCP", rncp)
            self.sub(certification, "code-CERTIFINFO", str(rng.randrange(50000, 120000)))
            if self.v23:
                self.sub(formation, "code-niveau-sortie", str(metier.niveau_sortie + 10))
            else:
                self.sub(formation, "code-niveau-sortie", str(metier.niveau_sortie + 1))

        n_actions = 3 if avenir else rng.choice((1, 1, 1, 2, 2, 3))
        co_contracting_22 = not self.v23 and n_actions > 1 and rng.random() < 0.45
        sessions = 0
        for index in range(1, n_actions + 1):
            sessions += self.action(
                formation,
                rng,
                rank,
                index,
                metier,
                responsable,
                avenir=avenir,
                avenir_on_action=avenir and not avenir_on_formation,
                co_contracting_22=co_contracting_22,
            )

        ofr = self.sub(formation, "organisme-formation-responsable")
        self.sub(ofr, "numero-activite", responsable.numero_activite)
        siret = self.sub(ofr, "SIRET-organisme-formation")
        self.sub(siret, "SIRET", responsable.siret)
        self.sub(ofr, "nom-organisme", responsable.nom)
        self.sub(ofr, "raison-sociale", responsable.raison_sociale)
        coordonnees = self.sub(self.sub(ofr, "coordonnees-organisme"), "coordonnees")
        self.adresse(coordonnees, responsable.town, responsable.street)
        telfixe = self.sub(coordonnees, "telfixe")
        self.sub(telfixe, "numtel", responsable.telephone)
        self.sub(coordonnees, "courriel", responsable.courriel)
        web = self.sub(coordonnees, "web")
        self.sub(web, "urlweb", responsable.web)
        self.contact(ofr, "contact-organisme", rng, responsable)

        extras: list[tuple[str, str]] = []
        if avenir_on_formation:
            extras.append(("programme", "#Avenir"))
        if rng.random() < 0.3:
            extras.append(("eligibilite-cpf", "1" if certifying else "0"))
        if extras:
            extras_element = self.sub(formation, "extras")
            for info, value in extras:
                self.sub(extras_element, "extra", value).set("info", info)
        return formation, n_actions, sessions

    # -- action ------------------------------------------------------------------------

    def action(
        self,
        formation: _Element,
        rng: random.Random,
        rank: int,
        index: int,
        metier: _Metier,
        responsable: _Organisation,
        *,
        avenir: bool,
        avenir_on_action: bool,
        co_contracting_22: bool,
    ) -> int:
        """Append action `index` to `formation`; return its number of sessions."""
        v23 = self.v23
        action = self.sub(formation, "action")
        prefix = "AVN-" if avenir else "AF"
        action.set("numero", f"{prefix}{self.seed}-{rank}-{index}")

        # Who delivers it (organisme-formateur) and where (lieu-de-formation).
        formateurs: list[_Organisation]
        draw = rng.random()
        if avenir:  # guichet unique: the mandataire and co-contractors as dispensateurs
            formateurs = [responsable if index == 1 else rng.choice(self.pool)]
        elif co_contracting_22:
            formateurs = [responsable if index == 1 and draw < 0.5 else rng.choice(self.pool)]
        elif draw < 0.25:
            formateurs = []  # the responsable is the dispensateur
        elif draw < 0.8 or not v23:
            formateurs = [responsable if rng.random() < 0.5 else rng.choice(self.pool)]
        else:  # 2.3 co-contracting: several dispensateurs in one action
            others = rng.sample(self.pool, rng.randint(1, 3))
            formateurs = [responsable, *others] if rng.random() < 0.5 else others
            formateurs = list({org.siret: org for org in formateurs}.values())
        dispensers = formateurs or [responsable]
        places = self.places(rng, dispensers)
        permanent = (avenir and index == 1) or (not avenir and rng.random() < 0.3)

        self.sub(action, "rythme-formation", rng.choice(_RYTHMES))
        for public in rng.sample(_PUBLICS, rng.choice((1, 1, 2, 3))):
            self.sub(action, "code-public-vise", public).set("ref", _FORMACODE_REF)
        self.sub(action, "niveau-entree-obligatoire", "1" if rng.random() < 0.2 else "0")
        self.sub(action, "modalites-alternance", rng.choice(_ALTERNANCES))
        self.sub(action, "modalites-enseignement", rng.choice("0000012"))
        self.sub(action, "conditions-specifiques", rng.choice(_CONDITIONS))
        self.sub(action, "prise-en-charge-frais-possible", "1" if rng.random() < 0.7 else "0")
        for place in places:
            lieu = self.sub(action, "lieu-de-formation")
            if place.siret is not None:
                self.sub(self.sub(lieu, "SIRET-lieu-formation"), "SIRET", place.siret)
            coordonnees = self.sub(lieu, "coordonnees")
            self.sub(coordonnees, "nom", place.nom[:50])
            self.adresse(coordonnees, place.town, place.street)
        self.sub(action, "modalites-entrees-sorties", "1" if permanent else "0")

        # Hours: total, or centre + entreprise (total sometimes given too).
        if avenir:
            hours = rng.choice((140, 210, 280, 350))
        else:
            hours = rng.choice((35, 70, 140, 210, 280, 400, 455, 560, 700, 910, 1200))
        company_hours = 0
        if rng.random() < 0.4:
            company_hours = rng.choice((70, 105, 140, 210))

        sessions = rng.randint(1, 4)
        first_start = self.first_start(rng, permanent)
        duration = max(5, hours * 7 // 30 + company_hours * 7 // 35)
        gap = rng.randint(30, 120)
        first_info_date: datetime.date | None = None
        for number in range(1, sessions + 1):
            if permanent:
                start = first_start + datetime.timedelta(days=(number - 1) * 182)
                end = start + datetime.timedelta(days=rng.choice((181, 181, 364)))
            else:
                start = first_start + datetime.timedelta(days=(number - 1) * gap)
                end = start + datetime.timedelta(days=duration + rng.randint(0, 10))
            if first_info_date is None:
                first_info_date = start
            self.session(action, rng, rank, index, number, start, end, permanent, places)

        if not v23:
            self.information_22(action, rng, first_info_date or self.reference, places[0])
        if rng.random() < 0.6:
            self.sub(
                action, "acces-handicapes", "Locaux accessibles aux personnes à mobilité réduite"
            )
        if rng.random() < 0.5:
            self.sub(action, "langue-formation", "fr")
        if not v23 and rng.random() < 0.6:
            self.sub(action, "modalites-recrutement", rng.choice(_MODALITES_RECRUTEMENT_22))
        if rng.random() < 0.3:
            self.sub(action, "code-perimetre-recrutement", rng.choice("23"))
        if rng.random() < 0.4:
            self.sub(action, "prix-total-TTC", f"{hours * rng.choice((9, 11, 13, 15))}.00")
        if avenir:
            self.sub(action, "duree-indicative", "1 000 heures (durée indicative du parcours)")
        if company_hours:
            self.sub(action, "nombre-heures-centre", str(hours))
            self.sub(action, "nombre-heures-entreprise", str(company_hours))
            if rng.random() < 0.5:
                self.sub(action, "nombre-heures-total", str(hours + company_hours))
        else:
            self.sub(action, "nombre-heures-total", str(hours))
        if rng.random() < 0.3:
            self.sub(action, "conventionnement", "1")

        for org in formateurs:
            formateur = self.sub(action, "organisme-formateur")
            self.sub(self.sub(formateur, "SIRET-formateur"), "SIRET", org.siret)
            self.sub(formateur, "raison-sociale-formateur", org.raison_sociale)
            if rng.random() < 0.7:
                self.contact(formateur, "contact-formateur", rng, org)

        self.financeurs_(action, rng, avenir)

        if avenir_on_action:
            extras = self.sub(action, "extras")
            self.sub(extras, "extra", "#Avenir").set("info", "programme")
        return sessions

    def places(self, rng: random.Random, dispensers: Sequence[_Organisation]) -> list[_Place]:
        """Training places: the dispensers' own sites and detached ones (2.2: exactly one)."""
        if self.v23:
            draw = rng.random()
            count = 0 if draw < 0.05 else 1 if draw < 0.75 else 2
        else:
            count = 1
        places: list[_Place] = []
        for _ in range(count):
            org = rng.choice(dispensers)
            kind = rng.random()
            if kind < 0.55:  # the dispenser's own establishment
                siret = org.siret if self.v23 and rng.random() < 0.7 else None
                places.append(_Place(org.nom, org.town, org.street, siret))
            else:  # a detached site, attached (2.3, sometimes) to the dispenser's SIRET
                town = rng.choice(_TOWNS) if rng.random() < 0.6 else org.town
                siret = org.siret if self.v23 and kind < 0.75 else None
                nom = f"{rng.choice(_DETACHED_PLACES)} {town.name}"
                street = f"{rng.randrange(1, 90)} {rng.choice(_STREETS)}"
                places.append(_Place(nom, town, street, siret))
        return places

    def first_start(self, rng: random.Random, permanent: bool) -> datetime.date:
        """Start of the first session: spread around the reference date."""
        offset = -rng.randint(0, 400) if permanent else rng.randint(-300, 240)
        return self.reference + datetime.timedelta(days=offset)

    # -- session -----------------------------------------------------------------------

    def session(
        self,
        action: _Element,
        rng: random.Random,
        rank: int,
        index: int,
        number: int,
        start: datetime.date,
        end: datetime.date,
        permanent: bool,
        places: Sequence[_Place],
    ) -> None:
        session = self.sub(action, "session")
        session.set("numero", f"SE{self.seed}-{rank}-{index}-{number}")
        periode = self.sub(session, "periode")
        draw = rng.random()
        if draw < 0.04:  # only the month is known
            debut, fin = _month_only(start), _month_only(end)
        elif draw < 0.05:
            debut, fin = "00000000", "99999999"
        elif draw < 0.07:
            debut, fin = f"{start.year:04d}0000", _lheo_date(end)
        elif permanent and draw < 0.3:
            debut, fin = _lheo_date(start), "99999999"
        else:
            debut, fin = _lheo_date(start), _lheo_date(end)
        self.sub(periode, "debut", debut)
        self.sub(periode, "fin", fin)

        place = rng.choice(places) if places else None
        inscription = self.sub(session, "adresse-inscription")
        if place is None:
            org = rng.choice(self.pool)
            self.adresse(inscription, org.town, org.street, full=False)
        else:
            self.adresse(inscription, place.town, place.street, full=False)
        if rng.random() < 0.3:
            self.sub(session, "modalites-inscription", rng.choice(_MODALITES_INSCRIPTION))
        if rng.random() < 0.25:
            periode_inscription = self.sub(self.sub(session, "periode-inscription"), "periode")
            self.sub(periode_inscription, "debut", _lheo_date(start - datetime.timedelta(60)))
            self.sub(periode_inscription, "fin", _lheo_date(start - datetime.timedelta(1)))
        draw = rng.random()
        if draw < 0.97:
            etat = "1" if draw < 0.78 else "2" if draw < 0.9 else "3"
            self.sub(session, "etat-recrutement", etat)
        if self.v23:
            self.recrutements(session, rng, start, permanent, place)

    def recrutements(
        self,
        session: _Element,
        rng: random.Random,
        start: datetime.date,
        permanent: bool,
        place: _Place | None,
    ) -> None:
        """2.3 `session/recrutement` blocks: ICO (9), RDVI (8), candidature (7), others."""
        if rng.random() < 0.12:
            return  # no recruitment modality at all: the prescriber is blocked
        anchor = self.reference if permanent else start
        ico, rdvi, candidature = rng.random() < 0.55, rng.random() < 0.4, rng.random() < 0.35
        other = rng.random() < 0.12
        if not (ico or rdvi or candidature or other):
            ico = True
        day = datetime.timedelta(days=1)
        if ico:
            for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
                block = self.sub(session, "recrutement")
                self.sub(block, "modalite-recrutement", "9")
                remote = rng.random() < 0.1
                self.sub(block, "a-distance", "1" if remote else "0")
                if remote:
                    self.sub(block, "urlweb", "https://visio.example.org/ico")
                elif place is not None:
                    self.adresse(block, place.town, place.street, place.nom, full=False)
                self.sub(block, "nb-places", str(rng.randint(8, 20)))
                when = anchor + rng.randint(-60, -3) * day
                periode = self.sub(block, "periode")
                self.sub(periode, "debut", _lheo_date(when))
                self.sub(periode, "fin", _lheo_date(when))
                heure_debut, heure_fin = _hour(rng, morning=rng.random() < 0.5)
                self.sub(block, "heure-debut", heure_debut)
                self.sub(block, "heure-fin", heure_fin)
                if rng.random() < 0.3:
                    self.sub(block, "commentaire", "Se munir d'un CV à jour.")
        if rdvi:
            block = self.sub(session, "recrutement")
            self.sub(block, "modalite-recrutement", "8")
            first = anchor + rng.randint(-75, -20) * day
            periode = self.sub(block, "periode")
            self.sub(periode, "debut", _lheo_date(first))
            self.sub(periode, "fin", _lheo_date(first + rng.randint(5, 60) * day))
            if rng.random() < 0.5:
                self.sub(block, "commentaire", "Rendez-vous individuels sur inscription.")
        if candidature:
            block = self.sub(session, "recrutement")
            self.sub(block, "modalite-recrutement", "7")
            self.sub(block, "nb-places", str(rng.randint(10, 30)))
            opening = anchor + rng.randint(-90, -15) * day
            periode = self.sub(block, "periode")
            self.sub(periode, "debut", _lheo_date(opening))
            self.sub(periode, "fin", _lheo_date(opening + rng.randint(10, 80) * day))
            if rng.random() < 0.4:
                self.sub(
                    block, "commentaire", "Candidature dans KAIROS : CV et lettre de motivation."
                )
        if other:
            block = self.sub(session, "recrutement")
            modalite = rng.choice("36")
            self.sub(block, "modalite-recrutement", modalite)
            self.sub(
                block,
                "commentaire",
                "Dossier de candidature à déposer auprès de l'organisme."
                if modalite == "3"
                else "Épreuve orale de motivation devant un jury.",
            )

    def information_22(
        self, action: _Element, rng: random.Random, first_start: datetime.date, place: _Place
    ) -> None:
        """2.2 information meetings: `adresse-information` and 0-3 `date-information`."""
        count = rng.choice((0, 0, 1, 1, 2, 3))
        if count or rng.random() < 0.2:
            adresse = self.sub(action, "adresse-information")
            self.adresse(adresse, place.town, place.street, full=False)
        days = sorted(rng.sample(range(3, 60), count), reverse=True)
        for days_before in days:
            when = first_start - datetime.timedelta(days=days_before)
            self.sub(self.sub(action, "date-information"), "date", _lheo_date(when))

    def financeurs_(self, action: _Element, rng: random.Random, avenir: bool) -> None:
        if avenir:
            codes = ["2"]
        else:
            draw = rng.random()
            count = 0 if draw < 0.12 else 1 if draw < 0.75 else 2 if draw < 0.95 else 3
            codes = list(dict.fromkeys(rng.choice(self.financeurs) for _ in range(count)))
        for code in codes:
            financeur = self.sub(action, "organisme-financeur")
            self.sub(financeur, "code-financeur", code)
            draw = rng.random()
            if draw < 0.75:
                self.sub(financeur, "nb-places-financees", str(rng.randint(6, 16)))
            elif draw < 0.85:
                self.sub(financeur, "nb-places-financees", "0")


# --------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------


def _child(parent: _Element, ns: str, local: str) -> _Element:
    found = parent.find(f"{{{ns}}}{local}")
    if found is None:  # pragma: no cover - the builder always writes these
        raise LookupError(f"no {local} under {parent.tag}")
    return found


def _inject_fault(formation: _Element, kind: str, ns: str, rng: random.Random) -> None:
    """Break `formation` against the schema in exactly one way of the given kind."""
    p = "{" + ns + "}"
    first_action = _child(formation, ns, "action")
    first_session = _child(first_action, ns, "session")
    if kind == "missing-mandatory-element":
        local = rng.choice(
            (
                "intitule-formation",
                "objectif-formation",
                "contenu-formation",
                "certifiante",
                "organisme-formation-responsable",
            )
        )
        formation.remove(_child(formation, ns, local))
    elif kind == "siret-length":
        sirets = formation.findall(
            f"{p}organisme-formation-responsable/{p}SIRET-organisme-formation/{p}SIRET"
        )
        sirets += formation.findall(f"{p}action/{p}organisme-formateur/{p}SIRET-formateur/{p}SIRET")
        target = rng.choice(sirets)
        value = target.text or "00000000000000"
        target.text = value[:13] if rng.random() < 0.5 else value + str(rng.randrange(10))
    elif kind == "text-too-long":
        choice = rng.randrange(3)
        if choice == 0:  # intitule-formation: max 255
            target = _child(formation, ns, "intitule-formation")
            title = target.text or "Formation"
            target.text = " - ".join([title] * (1 + 320 // len(title)))[: rng.randint(256, 320)]
        elif choice == 1:  # adresse/ligne: max 50
            target = formation.findall(f".//{p}ligne")[0]
            target.text = (target.text or "") + ", bâtiment B, 2e étage, porte gauche, fond de cour"
        else:  # numero-activite: exactly 11 characters
            target = formation.findall(f".//{p}numero-activite")[0]
            target.text = (target.text or "") + "0"
    elif kind == "bad-dictionary-code":
        choice = rng.randrange(3)
        if choice == 0:
            _child(formation, ns, "certifiante").text = "2"
        elif choice == 1:
            _child(first_action, ns, "modalites-entrees-sorties").text = "2"
        else:
            _child(formation, ns, "parcours-de-formation").text = "9"
    elif kind == "bad-date":
        # The schema's pattern ([019][0-9] month, [01239][0-9] day) lets 20261331 pass:
        # only day/month first digits outside those sets, or a wrong length, are caught.
        periode = _child(first_session, ns, "periode")
        target = _child(periode, ns, rng.choice(("debut", "fin")))
        target.text = rng.choice(("20261340", "20262015", "2026-11-05", "2026115"))
    elif kind == "unknown-element":
        if rng.random() < 0.5:
            intitule = _child(formation, ns, "intitule-formation")
            unknown = etree.Element(p + "duree-hebdomadaire")
            unknown.text = "35"
            intitule.addnext(unknown)
        else:
            unknown = etree.Element(p + "places-disponibles")
            unknown.text = "12"
            _child(first_session, ns, "periode").addnext(unknown)
    elif kind == "wrong-element-order":
        if rng.random() < 0.5:  # resultats-attendus before objectif-formation
            objectif = _child(formation, ns, "objectif-formation")
            objectif.addprevious(_child(formation, ns, "resultats-attendus"))
        else:  # adresse-inscription before periode
            periode = _child(first_session, ns, "periode")
            periode.addprevious(_child(first_session, ns, "adresse-inscription"))
    else:  # pragma: no cover - FAULT_KINDS is closed
        raise ValueError(f"unknown fault kind {kind!r}")


def _fault_plan(seed: int, formations: int, invalid_rate: float) -> dict[int, str]:
    """Ranks (1-based) of the formations to break, each with its fault kind."""
    if invalid_rate <= 0 or formations == 0:
        return {}
    count = min(formations, max(1, round(invalid_rate * formations)))
    rng = random.Random(f"{seed}:faults")  # noqa: S311 - test data, not crypto
    chosen = sorted(rng.sample(range(1, formations + 1), count))
    return {rank: FAULT_KINDS[i % len(FAULT_KINDS)] for i, rank in enumerate(chosen)}


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def _write_document(
    partial: Path,
    gzipped: bool,
    builder: _FormationBuilder,
    formations: int,
    plan: dict[int, str],
) -> tuple[int, int, tuple[str, ...]]:
    """Stream the document to `partial`; return (actions, sessions, invalid numeros)."""
    actions = sessions = 0
    invalid: list[str] = []
    with open(partial, "wb") as raw:
        stream: BinaryIO | gzip.GzipFile = raw
        if gzipped:  # no file name and mtime 0 in the header: deterministic bytes
            stream = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
        try:
            stream.write(_XML_DECLARATION)
            with (
                etree.xmlfile(stream, encoding="utf-8") as xf,
                xf.element(builder.q("lheo"), nsmap=builder.nsmap),
            ):
                xf.write("\n")
                with xf.element(builder.q("offres")):
                    xf.write("\n")
                    for rank in range(1, formations + 1):
                        formation, n_actions, n_sessions = builder.formation(rank)
                        kind = plan.get(rank)
                        if kind is not None:
                            fault_rng = random.Random(f"{builder.seed}:fault:{rank}")  # noqa: S311
                            _inject_fault(formation, kind, builder.ns, fault_rng)
                            invalid.append(formation.get("numero", ""))
                        xf.write(formation, pretty_print=True)
                        actions += n_actions
                        sessions += n_sessions
                xf.write("\n")
            stream.write(b"\n")
        finally:
            if stream is not raw:
                stream.close()
    return actions, sessions, tuple(invalid)


def write_offers(
    destination: str | os.PathLike[str],
    *,
    formations: int,
    seed: int,
    lheo_version: str,
    invalid_rate: float = 0.0,
    reference_date: datetime.date = datetime.date(2026, 11, 1),
) -> GenerationStats:
    """Write `formations` synthetic LHEO formations to `destination` (gzip if `.gz`).

    The file is written to `destination + ".part"` and renamed when complete (removed on
    failure). The same arguments always give the same bytes. See the module docstring.
    """
    if lheo_version not in LHEO_NAMESPACES:
        raise ValueError(f"unknown LHEO version {lheo_version!r}; known: 2.2, 2.3")
    if formations < 1:
        raise ValueError("formations must be at least 1 (lheo/offres needs a formation)")
    if not 0.0 <= invalid_rate <= 1.0:
        raise ValueError("invalid_rate must be between 0 and 1")

    path = Path(destination)
    partial = path.with_name(path.name + ".part")
    builder = _FormationBuilder(lheo_version, seed, reference_date)
    plan = _fault_plan(seed, formations, invalid_rate)
    try:
        actions, sessions, invalid = _write_document(
            partial, path.name.endswith(".gz"), builder, formations, plan
        )
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
    return GenerationStats(
        formations=formations,
        actions=actions,
        sessions=sessions,
        invalid_numeros=invalid,
        bytes_written=path.stat().st_size,
    )
