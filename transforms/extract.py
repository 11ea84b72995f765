"""From a valid LHEO `formation` element to typed records (transforms/records.py).

The schema has already checked structure, lengths and codes (transforms/reader.py
validates every formation before it comes here), so extraction only converts; it never
decides validity. This is the hot loop of a load (docs/performance.md, "Where the time
goes"): each element's children are grouped by local name once, then read with the
module-level helpers below.
"""

from __future__ import annotations

from typing import cast

from lxml import etree

from transforms.lheo_dates import LheoDate, parse_lheo_date
from transforms.records import (
    Action,
    Address,
    Coordinates,
    Extra,
    Formateur,
    Formation,
    Funder,
    LheoVersion,
    Organisation,
    Period,
    Recruitment,
    Session,
    TrainingPlace,
)


def source_line(element: etree._Element) -> int | None:
    """The element's line in the source file (lxml-stubs mistype `sourceline`)."""
    return cast("int | None", element.sourceline)


class Extractor:
    """Reads one valid formation into records.

    Each element's children are grouped by local name in one pass (`kids`), and every
    field of that element is then read from the group with the module-level helpers below
    (`_text`, `_texts`, …). No index keyed by element proxies, no method call per field:
    this is the hot loop of a load (docs/performance.md, "Where the time goes").
    """

    def __init__(self, namespace: str, version: LheoVersion) -> None:
        self.ns = namespace
        self.version = version
        self._cut = len(namespace) + 2  # "{namespace}" prefix of every tag
        self._extra_tag = self.q("extra")

    def q(self, name: str) -> str:
        return f"{{{self.ns}}}{name}"

    def kids(self, element: etree._Element | None) -> Kids:
        """`element`'s children by local name, in document order (empty for None)."""
        index: Kids = {}
        if element is None:
            return index
        cut = self._cut
        for child in element:
            tag = child.tag
            if type(tag) is str:  # skip entities/comments if any slipped through
                local = tag[cut:]
                found = index.get(local)
                if found is None:
                    index[local] = [child]
                else:
                    found.append(child)
        return index

    def child_kids(self, kids: Kids, name: str) -> Kids:
        """The children of the first `name` child (empty when there is none)."""
        found = kids.get(name)
        return self.kids(found[0]) if found else {}

    # -- leaves ------------------------------------------------------------------
    def extras(self, kids: Kids) -> tuple[Extra, ...]:
        found: list[Extra] = []
        for extras in kids.get("extras", ()):
            for extra in extras.iter(self._extra_tag):
                value = "".join(str(t) for t in extra.itertext()).strip()
                found.append(Extra(info=extra.get("info"), value=value))
        return tuple(found)

    def address(self, element: etree._Element | None) -> Address | None:
        if element is None:
            return None
        kids = self.kids(element)
        geo = self.child_kids(kids, "geolocalisation")
        return Address(
            lines=_texts(kids, "ligne"),
            postal_code=_text(kids, "codepostal"),
            city=_text(kids, "ville"),
            departement=_text(kids, "departement"),
            insee_commune=_text(kids, "code-INSEE-commune"),
            region=_text(kids, "region"),
            country=_text(kids, "pays"),
            latitude=_text(geo, "latitude"),
            longitude=_text(geo, "longitude"),
            denomination=_text(kids, "denomination"),
        )

    def coordinates(self, holder: Kids) -> Coordinates | None:
        """`coordonnees` below the holder (a `lieu-de-formation`): name and address only."""
        element = _first(holder, "coordonnees")
        if element is None:
            return None
        kids = self.kids(element)
        return Coordinates(nom=_text(kids, "nom"), address=self.address(_first(kids, "adresse")))

    def period(self, element: etree._Element | None) -> Period | None:
        if element is None:
            return None
        kids = self.kids(element)
        return Period(debut=_date(kids, "debut"), fin=_date(kids, "fin"))

    def siret(self, holder: etree._Element | None) -> str | None:
        """SIRET inside a `SIRET-…` wrapper element."""
        return _text(self.kids(holder), "SIRET")

    # -- structure ---------------------------------------------------------------
    def formation(self, element: etree._Element) -> Formation:
        kids = self.kids(element)
        domaine = self.child_kids(kids, "domaine-formation")
        formacodes: list[str] = []
        for code in domaine.get("code-FORMACODE", ()):
            value = (code.text or "").strip()
            if not value:
                continue
            # Rule of the LHEO definition and of the Normandie deck "SMF et KAIROS": the first
            # FORMACODE is the main one, unless one is explicitly tagged "principal".
            if code.get("tag") == "principal":
                formacodes.insert(0, value)
            else:
                formacodes.append(value)
        responsable = _first(kids, "organisme-formation-responsable")
        assert responsable is not None  # mandatory in the schema
        return Formation(
            numero=element.get("numero"),
            lheo_version=self.version,
            intitule=_text(kids, "intitule-formation") or "",
            objectif=_text(kids, "objectif-formation"),
            resultats_attendus=_text(kids, "resultats-attendus"),
            contenu=_text(kids, "contenu-formation"),
            certifiante=_flag(kids, "certifiante"),
            formacodes=tuple(formacodes),
            rome_codes=_texts(domaine, "code-ROME"),
            nsf_codes=_texts(domaine, "code-NSF"),
            objectif_general=_integer(kids, "objectif-general-formation"),
            niveau_entree=_integer(kids, "code-niveau-entree"),
            niveau_sortie=_integer(kids, "code-niveau-sortie"),
            responsable=self.organisation(responsable),
            actions=tuple(self.action(a) for a in kids.get("action", ())),
            extras=self.extras(kids),
            line=source_line(element),
        )

    def organisation(self, element: etree._Element) -> Organisation:
        kids = self.kids(element)
        own = self.coordinates(self.child_kids(kids, "coordonnees-organisme"))
        return Organisation(
            siret=self.siret(_first(kids, "SIRET-organisme-formation")) or "",
            numero_activite=_text(kids, "numero-activite"),
            nom=_text(kids, "nom-organisme"),
            raison_sociale=_text(kids, "raison-sociale"),
            extras=self.extras(kids),
            address=own.address if own is not None else None,
        )

    def action(self, element: etree._Element) -> Action:
        kids = self.kids(element)
        places = []
        for place in kids.get("lieu-de-formation", ()):
            place_kids = self.kids(place)
            coordinates = self.coordinates(place_kids)
            assert coordinates is not None  # mandatory in the schema
            places.append(
                TrainingPlace(
                    coordinates=coordinates,
                    siret=self.siret(_first(place_kids, "SIRET-lieu-formation")),
                    uai=_text(self.child_kids(place_kids, "code-UAI-lieu-formation"), "code-UAI"),
                    extras=self.extras(place_kids),
                    principal=place.get("tag") == "principal",
                )
            )
        formateurs = tuple(self.formateur(f) for f in kids.get("organisme-formateur", ()))
        funders = tuple(self.funder(f) for f in kids.get("organisme-financeur", ()))
        info_dates = tuple(
            d
            for d in (_date(self.kids(i), "date") for i in kids.get("date-information", ()))
            if d is not None
        )
        return Action(
            numero=element.get("numero"),
            rythme=_text(kids, "rythme-formation"),
            public_codes=_texts(kids, "code-public-vise"),
            modalites_entrees_sorties=_integer(kids, "modalites-entrees-sorties"),
            sessions=tuple(self.session(s) for s in kids.get("session", ())),
            places=tuple(places),
            formateurs=formateurs,
            funders=funders,
            information_address=self.address(
                _first(self.child_kids(kids, "adresse-information"), "adresse")
            ),
            information_dates=info_dates,
            recruitment_text=_text(kids, "modalites-recrutement"),
            hours_total=_integer(kids, "nombre-heures-total"),
            hours_centre=_integer(kids, "nombre-heures-centre"),
            hours_entreprise=_integer(kids, "nombre-heures-entreprise"),
            duree_indicative=_text(kids, "duree-indicative"),
            urls=_texts(self.child_kids(kids, "url-action"), "urlweb"),
            extras=self.extras(kids),
            line=source_line(element),
        )

    def formateur(self, element: etree._Element) -> Formateur:
        kids = self.kids(element)
        return Formateur(
            siret=self.siret(_first(kids, "SIRET-formateur")) or "",
            raison_sociale=_text(kids, "raison-sociale-formateur"),
            extras=self.extras(kids),
        )

    def funder(self, element: etree._Element) -> Funder:
        kids = self.kids(element)
        return Funder(
            code=_text(kids, "code-financeur") or "",
            places=_integer(kids, "nb-places-financees"),
        )

    def session(self, element: etree._Element) -> Session:
        kids = self.kids(element)
        period = self.period(_first(kids, "periode"))
        assert period is not None  # mandatory in the schema
        return Session(
            numero=element.get("numero"),
            period=period,
            registration_address=self.address(
                _first(self.child_kids(kids, "adresse-inscription"), "adresse")
            ),
            registration_terms=_text(kids, "modalites-inscription"),
            registration_period=self.period(
                _first(self.child_kids(kids, "periode-inscription"), "periode")
            ),
            etat_recrutement=_integer(kids, "etat-recrutement"),
            recrutements=tuple(self.recruitment(r) for r in kids.get("recrutement", ())),
            extras=self.extras(kids),
            line=source_line(element),
        )

    def recruitment(self, element: etree._Element) -> Recruitment:
        kids = self.kids(element)
        return Recruitment(
            modality=_integer(kids, "modalite-recrutement") or 0,
            period=self.period(_first(kids, "periode")),
            places=_integer(kids, "nb-places"),
            address=self.address(_first(kids, "adresse")),
            start_time=_text(kids, "heure-debut"),
            end_time=_text(kids, "heure-fin"),
            remote=_flag(kids, "a-distance"),
            url=_text(kids, "urlweb"),
            comment=_text(kids, "commentaire"),
        )


# Children of one element by local name (`Extractor.kids`); read with the helpers below.
Kids = dict[str, list[etree._Element]]


def _first(kids: Kids, name: str) -> etree._Element | None:
    found = kids.get(name)
    return found[0] if found else None


def _text(kids: Kids, name: str) -> str | None:
    """Stripped text of the first `name` child; None when missing or blank."""
    found = kids.get(name)
    if not found:
        return None
    value = found[0].text
    if value is None:
        return None
    value = value.strip()
    return value or None


def _texts(kids: Kids, name: str) -> tuple[str, ...]:
    """Stripped texts of every `name` child, blanks left out."""
    found = kids.get(name)
    if not found:
        return ()
    values: list[str] = []
    for child in found:
        value = child.text  # read once: each `.text` builds a new string
        if value:
            value = value.strip()
            if value:
                values.append(value)
    return tuple(values)


def _integer(kids: Kids, name: str) -> int | None:
    value = _text(kids, name)
    return int(value) if value is not None else None


def _date(kids: Kids, name: str) -> LheoDate | None:
    return parse_lheo_date(_text(kids, name))


def _flag(kids: Kids, name: str) -> bool | None:
    value = _text(kids, name)
    return None if value is None else value == "1"
