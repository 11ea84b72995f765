"""Typed records the reader produces from a valid LHEO `formation`.

The shape follows LHEO (formation → actions → sessions) and carries every field the
KAIROS screens 1 to 5 need (Normandie deck "SMF et KAIROS", "Saisir ma formation et KAIROS"; see
docs/reader.md). Both LHEO 2.2 and 2.3 map onto the same records: fields that exist in
one version only are empty in the other (e.g. `recrutements` is 2.3, `dates_information`
is 2.2 and 2.3).

Records are frozen dataclasses built of tuples so they are hashable, cheap to pickle
across worker processes, and safe to share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from transforms.lheo_dates import LheoDate

LheoVersion = Literal["2.2", "2.3"]

# LHEO namespaces: the version of a document is read from its root namespace.
NAMESPACES: dict[str, LheoVersion] = {
    "http://www.lheo.org/2.2": "2.2",
    "http://lheo.gouv.fr/2.3": "2.3",
}
NAMESPACE_OF: dict[LheoVersion, str] = {version: ns for ns, version in NAMESPACES.items()}

# dict-modalite-recrutement (LHEO 2.3): the three KAIROS recruitment modalities.
MODALITY_CANDIDATURE = 7
MODALITY_RDVI = 8
MODALITY_ICO = 9


@dataclass(frozen=True, slots=True)
class Extra:
    """An `extras/extra` element: regional extension, keyed by its `info` attribute."""

    info: str | None
    value: str


@dataclass(frozen=True, slots=True)
class Address:
    lines: tuple[str, ...] = ()
    postal_code: str | None = None
    city: str | None = None
    departement: str | None = None
    insee_commune: str | None = None
    region: str | None = None
    country: str | None = None
    latitude: str | None = None
    longitude: str | None = None
    denomination: str | None = None  # 2.3 only


@dataclass(frozen=True, slots=True)
class Coordinates:
    """LHEO `coordonnees` of a place of training: its name and address. The people's
    contact details LHEO carries beside them (civilité, names, phones, e-mails) and the
    `contact-*` blocks are personal data the mapping never needs: they are not extracted at
    all (docs/reader.md)."""

    nom: str | None = None
    address: Address | None = None


@dataclass(frozen=True, slots=True)
class Period:
    debut: LheoDate | None
    fin: LheoDate | None


@dataclass(frozen=True, slots=True)
class Organisation:
    """`organisme-formation-responsable` (the mandataire). `address` is the organisation's
    own (`coordonnees-organisme/coordonnees/adresse`): where it is, to tell one of its
    places of training from a detached site; its phones and e-mails are not read."""

    siret: str
    numero_activite: str | None
    nom: str | None
    raison_sociale: str | None
    extras: tuple[Extra, ...] = ()
    address: Address | None = None


@dataclass(frozen=True, slots=True)
class Formateur:
    """`action/organisme-formateur`: a dispensateur of the action."""

    siret: str
    raison_sociale: str | None
    extras: tuple[Extra, ...] = ()


@dataclass(frozen=True, slots=True)
class TrainingPlace:
    """`action/lieu-de-formation`. `siret` exists in LHEO 2.3 only; `principal`: the place
    carries `tag="principal"` (the one KAIROS screen 3 shows first)."""

    coordinates: Coordinates
    siret: str | None = None
    uai: str | None = None
    extras: tuple[Extra, ...] = ()
    principal: bool = False


@dataclass(frozen=True, slots=True)
class Funder:
    """`action/organisme-financeur`: code from dict-financeurs and funded places."""

    code: str
    places: int | None


@dataclass(frozen=True, slots=True)
class Recruitment:
    """LHEO 2.3 `session/recrutement`: one recruitment modality of a session."""

    modality: int
    period: Period | None = None
    places: int | None = None
    address: Address | None = None
    start_time: str | None = None
    end_time: str | None = None
    remote: bool | None = None
    url: str | None = None
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class Session:
    numero: str | None
    period: Period
    registration_address: Address | None
    registration_terms: str | None = None
    registration_period: Period | None = None
    etat_recrutement: int | None = None  # dict-etat-recrutement: 1 open, 2 closed, 3 suspended
    recrutements: tuple[Recruitment, ...] = ()
    extras: tuple[Extra, ...] = ()
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Action:
    numero: str | None
    rythme: str | None
    public_codes: tuple[str, ...]
    modalites_entrees_sorties: int | None  # 0 fixed dates, 1 permanent entries/exits
    sessions: tuple[Session, ...]
    places: tuple[TrainingPlace, ...] = ()
    formateurs: tuple[Formateur, ...] = ()
    funders: tuple[Funder, ...] = ()
    information_address: Address | None = None
    information_dates: tuple[LheoDate, ...] = ()
    recruitment_text: str | None = None  # 2.2/2.3 free text `modalites-recrutement`
    hours_total: int | None = None
    hours_centre: int | None = None
    hours_entreprise: int | None = None
    duree_indicative: str | None = None
    urls: tuple[str, ...] = ()
    extras: tuple[Extra, ...] = ()
    line: int | None = None

    @property
    def duration_hours(self) -> int | None:
        """KAIROS screen 2 duration: total hours, else centre + entreprise (Normandie deck)."""
        if self.hours_total is not None:
            return self.hours_total
        if self.hours_centre is None and self.hours_entreprise is None:
            return None
        return (self.hours_centre or 0) + (self.hours_entreprise or 0)


@dataclass(frozen=True, slots=True)
class Formation:
    """A valid LHEO `formation` with everything below it."""

    numero: str | None
    lheo_version: LheoVersion
    intitule: str
    objectif: str | None
    resultats_attendus: str | None
    contenu: str | None
    certifiante: bool | None
    formacodes: tuple[str, ...]  # main FORMACODE first (tag="principal", else document order)
    rome_codes: tuple[str, ...]
    nsf_codes: tuple[str, ...]
    objectif_general: int | None  # dict-AIS
    niveau_entree: int | None
    niveau_sortie: int | None
    responsable: Organisation
    actions: tuple[Action, ...]
    extras: tuple[Extra, ...] = ()
    line: int | None = None

    @property
    def main_formacode(self) -> str | None:
        return self.formacodes[0] if self.formacodes else None


@dataclass(frozen=True, slots=True)
class Rejection:
    """One reason a record was refused: where in the file and why, in plain words."""

    line: int | None
    path: str
    message: str


@dataclass(frozen=True, slots=True)
class QuarantinedRecord:
    """A record that was not read: kept with every reason, never loaded.

    `kind` is `formation` (a formation that failed the schema, or one found where LHEO never
    puts formations, e.g. inside an unknown element under `<offres>`) or `element` (an
    element under `<offres>` that is not a formation)."""

    source: str | None
    file: str
    numero: str | None
    line: int | None
    reasons: tuple[Rejection, ...] = field(default_factory=tuple)
    kind: str = "formation"

    @property
    def path(self) -> str:
        return self.reasons[0].path if self.reasons else ""

    @property
    def message(self) -> str:
        return "; ".join(r.message for r in self.reasons)
