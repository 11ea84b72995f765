"""The project's LHEO schemas (lheo_schemas/) against the published LHEO schemas.

Each `formation` is validated on its own, wrapped in `<lheo><offres>…</offres></lheo>`
of its version's namespace (as transforms/reader.py does), by both schemas, and the two
verdicts are compared. Documents:

* the 18 real LHEO 2.2 records of ../shared/reference/real-lheo (read in place);
* offers written by samples/generator.py (2.2 and 2.3, valid and partly invalid);
* mutations of a real 2.2 record, of tests/fixtures/lheo-2.3-conformance.xml and of a
  generated 2.3 offer: one named function per mutation, each with the verdicts it must
  get. A mutation meant to break must be rejected by the published schema too, so a
  mutation that silently does nothing fails its test.

The published schemas leave three rules of the LHEO language definitions out: integer
ranges (`basic_int vmin vmax`), required attributes, and the 2.3 `horodatage-*` / `uri`
attributes. The project's schemas leave the first two out too (a record must be accepted
or refused as the national toolchain does) but declare the 2.3 attributes, typed, because
the national 2.3 flux carries them on every element (docs/schemas.md). Each mutation
records the three verdicts (full definition, published, project);
`test_full_definition_variant_differs_only_on_those_rules` shows those rules are the only
differences between the definitions and the published schemas, and
`test_project_schema_departs_from_the_published_one_only_on_timestamps` that the
project's schema gives the published verdict on every document without those attributes.

Reads ../shared (marker `shared`): skipped when it is absent.
"""

from __future__ import annotations

import copy
import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

from lheo_schemas import schema_path

pytestmark = pytest.mark.shared

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = PROJECT_ROOT.parent / "shared"
REAL_DIR = SHARED_DIR / "reference" / "real-lheo"
FIXTURE_2_3 = PROJECT_ROOT / "tests" / "fixtures" / "lheo-2.3-conformance.xml"
FIXTURE_TIMESTAMPS = PROJECT_ROOT / "tests" / "fixtures" / "lheo-2.3-horodatage.xml"
TOOL = PROJECT_ROOT / "tools" / "lheo_xsd_from_definition.py"

NAMESPACES = {"2.2": "http://www.lheo.org/2.2", "2.3": "http://lheo.gouv.fr/2.3"}
PUBLISHED = {"2.2": "lheo-2.2.1.xsd", "2.3": "lheo-2.3.0.xsd"}
DEFINITIONS = {"2.2": "lheo-definition-2.2.1.xml", "2.3": "lheo-definition-2.3.0.xml"}
REAL_BASE = "formation.xml"  # the richest real record: base of the 2.2 mutations

#: Verdicts as (the full language definition accepts, the published schema accepts, the
#: project's schema accepts).
Verdicts = tuple[bool, bool, bool]
ALL_ACCEPT: Verdicts = (True, True, True)
ALL_REJECT: Verdicts = (False, False, False)
#: A rule of the language definition that neither the published nor the project's schema
#: checks (integer ranges, required attributes): the project keeps the published verdict.
ONLY_FULL_DEFINITION_REJECTS: Verdicts = (False, True, True)
#: A 2.3 `horodatage-*` / `uri` attribute, well typed: declared by the definition and the
#: project's schema, not by the published one (docs/schemas.md).
ONLY_PUBLISHED_REJECTS: Verdicts = (True, False, True)

SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


# --------------------------------------------------------------------------- helpers


def _parse(path: Path) -> etree._ElementTree:
    return etree.parse(str(path), SAFE_PARSER)


def wrap(formation: etree._Element, version: str) -> etree._ElementTree:
    """A copy of ``formation`` alone in `<lheo><offres>` of the version's namespace."""
    namespace = NAMESPACES[version]
    root = etree.Element(f"{{{namespace}}}lheo", nsmap={None: namespace})  # type: ignore[dict-item]
    offres = etree.SubElement(root, f"{{{namespace}}}offres")
    offres.append(copy.deepcopy(formation))
    return etree.ElementTree(root)


def formations(tree: etree._ElementTree) -> list[etree._Element]:
    return tree.getroot().findall("{*}offres/{*}formation")


def verdict(schema: etree.XMLSchema, document: etree._ElementTree) -> tuple[bool, str]:
    """Whether ``schema`` accepts ``document``, and the first errors when it does not."""
    valid = schema.validate(document)
    errors = "; ".join(str(schema.error_log).splitlines()[:3])
    return valid, errors


@dataclass(frozen=True)
class Schemas:
    """The project's and the published schema of one version."""

    project: etree.XMLSchema
    published: etree.XMLSchema

    def judge(self, document: etree._ElementTree) -> tuple[tuple[bool, bool], str]:
        """(the published schema accepts, the project's schema accepts), and the errors."""
        ours, our_errors = verdict(self.project, document)
        theirs, their_errors = verdict(self.published, document)
        return (theirs, ours), f"project: [{our_errors}] published: [{their_errors}]"


@pytest.fixture(scope="module")
def reference_dir(shared_dir: Path) -> Path:
    return shared_dir / "reference" / "lheo"


@pytest.fixture(scope="module")
def schemas(reference_dir: Path) -> dict[str, Schemas]:
    return {
        version: Schemas(
            project=etree.XMLSchema(_parse(schema_path(version))),
            published=etree.XMLSchema(_parse(reference_dir / PUBLISHED[version])),
        )
        for version in NAMESPACES
    }


def _load_tool() -> object:
    spec = importlib.util.spec_from_file_location("lheo_xsd_from_definition", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- mutations

Mutate = Callable[[etree._Element], None]


@dataclass(frozen=True)
class Mutation:
    """A named change to one formation and the verdicts it must get, per LHEO version."""

    name: str
    apply: Mutate
    expected: Mapping[str, Verdicts]


MUTATIONS: list[Mutation] = []


def mutation(expected: Verdicts | Mapping[str, Verdicts]) -> Callable[[Mutate], Mutate]:
    """Register a mutation function under its own name."""

    def register(function: Mutate) -> Mutate:
        per_version = (
            expected if isinstance(expected, Mapping) else dict.fromkeys(NAMESPACES, expected)
        )
        MUTATIONS.append(Mutation(function.__name__, function, per_version))
        return function

    return register


def _all(formation: etree._Element, path: str) -> list[etree._Element]:
    """Elements at ``path`` ("a/b/c", local names, anywhere below the formation)."""
    return formation.findall(".//" + "/".join(f"{{*}}{step}" for step in path.split("/")))


def _one(formation: etree._Element, path: str) -> etree._Element:
    found = _all(formation, path)
    assert found, f"mutation target {path!r} missing from the base formation"
    return found[0]


def _child(formation: etree._Element, local: str) -> etree._Element:
    """A direct child of the formation."""
    found = formation.find(f"{{*}}{local}")
    assert found is not None, f"mutation target {local!r} missing from the base formation"
    return found


def _new(near: etree._Element, local: str, text: str | None = None) -> etree._Element:
    """A new element in the namespace of ``near``."""
    element = near.makeelement(f"{{{etree.QName(near).namespace}}}{local}", {})
    element.text = text
    return element


def _set_text(formation: etree._Element, path: str, text: str) -> None:
    _one(formation, path).text = text


# Missing mandatory elements


@mutation(ALL_REJECT)
def missing_intitule_formation(formation: etree._Element) -> None:
    formation.remove(_child(formation, "intitule-formation"))


@mutation(ALL_REJECT)
def missing_session_fin(formation: etree._Element) -> None:
    fin = _one(formation, "session/periode/fin")
    fin.getparent().remove(fin)  # type: ignore[union-attr]


@mutation(ALL_REJECT)
def missing_siret_of_responsible_organisation(formation: etree._Element) -> None:
    siret = _one(formation, "organisme-formation-responsable/SIRET-organisme-formation/SIRET")
    siret.getparent().remove(siret)  # type: ignore[union-attr]


@mutation(ALL_REJECT)
def formation_without_action(formation: etree._Element) -> None:
    for action in formation.findall("{*}action"):
        formation.remove(action)


@mutation(ALL_ACCEPT)
def optional_objectif_general_formation_removed(formation: etree._Element) -> None:
    formation.remove(_child(formation, "objectif-general-formation"))


# Element order


@mutation(ALL_REJECT)
def intitule_after_objectif(formation: etree._Element) -> None:
    _child(formation, "objectif-formation").addnext(_child(formation, "intitule-formation"))


@mutation(ALL_REJECT)
def fin_before_debut(formation: etree._Element) -> None:
    _one(formation, "session/periode/debut").addprevious(_one(formation, "session/periode/fin"))


@mutation(ALL_REJECT)
def extras_first_in_action(formation: etree._Element) -> None:
    action = _child(formation, "action")
    extras = _new(action, "extras")
    extras.append(_new(action, "extra", "x"))
    action.insert(0, extras)


# Text lengths


@mutation(ALL_REJECT)
def intitule_too_long(formation: etree._Element) -> None:
    _child(formation, "intitule-formation").text = "x" * 256


@mutation(ALL_ACCEPT)
def intitule_at_max_length(formation: etree._Element) -> None:
    _child(formation, "intitule-formation").text = "x" * 255


@mutation(ALL_REJECT)
def intitule_empty(formation: etree._Element) -> None:
    _child(formation, "intitule-formation").text = None


@mutation(ALL_ACCEPT)
def intitule_one_space(formation: etree._Element) -> None:
    """xs:string keeps whitespace: one space is one character, like in the published schema."""
    _child(formation, "intitule-formation").text = " "


@mutation(ALL_REJECT)
def code_formacode_too_short(formation: etree._Element) -> None:
    _set_text(formation, "domaine-formation/code-FORMACODE", "1234")


@mutation(ALL_REJECT)
def code_formacode_too_long(formation: etree._Element) -> None:
    _set_text(formation, "domaine-formation/code-FORMACODE", "123456")


@mutation(ALL_REJECT)
def siret_13_digits(formation: etree._Element) -> None:
    _set_text(formation, "SIRET-organisme-formation/SIRET", "1234567890123")


@mutation(ALL_REJECT)
def siret_15_digits(formation: etree._Element) -> None:
    _set_text(formation, "SIRET-organisme-formation/SIRET", "123456789012345")


@mutation(ALL_REJECT)
def code_postal_4_digits(formation: etree._Element) -> None:
    _set_text(formation, "session/adresse-inscription/adresse/codepostal", "4500")


# Dictionaries


@mutation(ALL_REJECT)
def certifiante_not_boolean(formation: etree._Element) -> None:
    _child(formation, "certifiante").text = "2"


@mutation(ALL_ACCEPT)
def certifiante_code_with_spaces(formation: etree._Element) -> None:
    """Dictionary codes are xs:token: surrounding whitespace is collapsed away."""
    _child(formation, "certifiante").text = "  1 "


@mutation(ALL_REJECT)
def etat_recrutement_unknown_code(formation: etree._Element) -> None:
    _set_text(formation, "session/etat-recrutement", "0")


@mutation(ALL_REJECT)
def code_financeur_unknown_code(formation: etree._Element) -> None:
    _set_text(formation, "organisme-financeur/code-financeur", "99")


@mutation(ALL_REJECT)
def code_niveau_entree_label_instead_of_code(formation: etree._Element) -> None:
    _child(formation, "code-niveau-entree").text = "niveau 3"


# Dates


@mutation(ALL_REJECT)
def debut_month_20(formation: etree._Element) -> None:
    _set_text(formation, "session/periode/debut", "20242001")


@mutation(ALL_ACCEPT)
def debut_month_13_passes_the_lheo_pattern(formation: etree._Element) -> None:
    """The LHEO date pattern only checks digits per position: month 13 gets through."""
    _set_text(formation, "session/periode/debut", "20241301")


@mutation(ALL_REJECT)
def debut_day_45(formation: etree._Element) -> None:
    _set_text(formation, "session/periode/debut", "20240945")


@mutation(ALL_REJECT)
def debut_with_letters(formation: etree._Element) -> None:
    _set_text(formation, "session/periode/debut", "2024O9O1")


@mutation(ALL_REJECT)
def debut_7_digits(formation: etree._Element) -> None:
    _set_text(formation, "session/periode/debut", "2024090")


@mutation(ALL_REJECT)
def debut_9_digits(formation: etree._Element) -> None:
    _set_text(formation, "session/periode/debut", "202409011")


@mutation(ALL_REJECT)
def debut_iso_format(formation: etree._Element) -> None:
    _set_text(formation, "session/periode/debut", "2024-09-01")


@mutation(ALL_ACCEPT)
def debut_month_only(formation: etree._Element) -> None:
    _set_text(formation, "session/periode/debut", "20240900")


@mutation(ALL_ACCEPT)
def debut_year_only(formation: etree._Element) -> None:
    _set_text(formation, "session/periode/debut", "20240000")


@mutation(ALL_ACCEPT)
def debut_unknown(formation: etree._Element) -> None:
    _set_text(formation, "session/periode/debut", "00000000")


@mutation(ALL_ACCEPT)
def fin_unknown(formation: etree._Element) -> None:
    _set_text(formation, "session/periode/fin", "99999999")


@mutation(ALL_ACCEPT)
def fin_with_surrounding_spaces(formation: etree._Element) -> None:
    """Dates are xs:token: surrounding whitespace is collapsed before the pattern."""
    _set_text(formation, "session/periode/fin", " 20250328 ")


# Cardinalities


@mutation(ALL_REJECT)
def unknown_element_in_formation(formation: etree._Element) -> None:
    _child(formation, "intitule-formation").addnext(_new(formation, "sous-titre", "x"))


@mutation(ALL_REJECT)
def unknown_element_without_namespace(formation: etree._Element) -> None:
    _child(formation, "certifiante").addnext(etree.Element("commentaire"))


@mutation(ALL_REJECT)
def intitule_twice(formation: etree._Element) -> None:
    intitule = _child(formation, "intitule-formation")
    intitule.addnext(copy.deepcopy(intitule))


@mutation(ALL_REJECT)
def certifiante_twice(formation: etree._Element) -> None:
    certifiante = _child(formation, "certifiante")
    certifiante.addnext(copy.deepcopy(certifiante))


def _formacodes(formation: etree._Element, count: int) -> None:
    domaine = _child(formation, "domaine-formation")
    for code in domaine.findall("{*}code-FORMACODE"):
        domaine.remove(code)
    for index in range(count):
        code = _new(domaine, "code-FORMACODE", f"3173{index}")
        code.set("ref", "V14")
        domaine.insert(index, code)


@mutation(ALL_REJECT)
def six_code_formacode(formation: etree._Element) -> None:
    _formacodes(formation, 6)


@mutation(ALL_ACCEPT)
def five_code_formacode(formation: etree._Element) -> None:
    _formacodes(formation, 5)


# Content kinds


@mutation(ALL_REJECT)
def text_inside_domaine_formation(formation: etree._Element) -> None:
    domaine = _child(formation, "domaine-formation")
    domaine.text = "informatique"


@mutation(ALL_REJECT)
def element_inside_intitule(formation: etree._Element) -> None:
    _child(formation, "intitule-formation").append(_new(formation, "em", "x"))


# Integers


@mutation(ALL_REJECT)
def nombre_heures_centre_in_words(formation: etree._Element) -> None:
    _set_text(formation, "action/nombre-heures-centre", "douze")


@mutation(ALL_REJECT)
def nombre_heures_centre_decimal(formation: etree._Element) -> None:
    _set_text(formation, "action/nombre-heures-centre", "12.5")


@mutation(ALL_ACCEPT)
def nombre_heures_centre_zero(formation: etree._Element) -> None:
    _set_text(formation, "action/nombre-heures-centre", "0")


@mutation(ALL_ACCEPT)
def nombre_heures_centre_at_max(formation: etree._Element) -> None:
    _set_text(formation, "action/nombre-heures-centre", "99999")


@mutation(ONLY_FULL_DEFINITION_REJECTS)
def nombre_heures_centre_negative(formation: etree._Element) -> None:
    """The definition says 0..99999; the published schema only checks an xs:long."""
    _set_text(formation, "action/nombre-heures-centre", "-1")


@mutation(ONLY_FULL_DEFINITION_REJECTS)
def nombre_heures_total_too_large(formation: etree._Element) -> None:
    _set_text(formation, "action/nombre-heures-total", "100000")


@mutation(ALL_REJECT)
def nombre_heures_total_beyond_long(formation: etree._Element) -> None:
    _set_text(formation, "action/nombre-heures-total", "99999999999999999999")


# Attributes


@mutation(ALL_REJECT)
def unknown_attribute_on_formation(formation: etree._Element) -> None:
    formation.set("statut", "publie")


@mutation(ALL_REJECT)
def unknown_attribute_on_intitule(formation: etree._Element) -> None:
    _child(formation, "intitule-formation").set("lang", "fr")


@mutation(ALL_ACCEPT)
def known_attributes_on_intitule(formation: etree._Element) -> None:
    intitule = _child(formation, "intitule-formation")
    for name, value in {"numero": "1", "info": "i", "ref": "r", "tag": "t", "id": "x1"}.items():
        intitule.set(name, value)


@mutation(ONLY_FULL_DEFINITION_REJECTS)
def code_formacode_without_required_ref(formation: etree._Element) -> None:
    """`ref` (FORMACODE version) is required by the definition, not by the published schema."""
    del _one(formation, "domaine-formation/code-FORMACODE").attrib["ref"]


@mutation(ALL_ACCEPT)
def id_and_matching_idref(formation: etree._Element) -> None:
    _child(formation, "intitule-formation").set("id", "intitule-1")
    _child(formation, "objectif-formation").set("idref", "intitule-1")


@mutation(ALL_ACCEPT)
def idref_to_nothing_is_not_resolved(formation: etree._Element) -> None:
    """libxml2 checks an IDREF's syntax, not that its ID exists (same for both schemas)."""
    _child(formation, "objectif-formation").set("idref", "nulle-part")


@mutation(ALL_REJECT)
def id_used_twice(formation: etree._Element) -> None:
    _child(formation, "intitule-formation").set("id", "doublon")
    _child(formation, "objectif-formation").set("id", "doublon")


@mutation(ALL_REJECT)
def id_not_an_ncname(formation: etree._Element) -> None:
    _child(formation, "intitule-formation").set("id", "12 ab")


@mutation({"2.2": ALL_REJECT, "2.3": ONLY_PUBLISHED_REJECTS})
def horodatage_modification_attribute(formation: etree._Element) -> None:
    """2.3 definition: `horodatage-*` attributes (ISO 8601); absent from both published XSDs."""
    formation.set("horodatage-modification", "2024-03-12T10:15:00+01:00")


@mutation(ALL_REJECT)
def horodatage_modification_not_iso(formation: etree._Element) -> None:
    formation.set("horodatage-modification", "12/03/2024")


@mutation({"2.2": ALL_REJECT, "2.3": ONLY_PUBLISHED_REJECTS})
def uri_attribute(formation: etree._Element) -> None:
    _child(formation, "action").set("uri", "https://offre.example.test/actions/1")


TIMESTAMP_ATTRIBUTES = (
    "horodatage-creation",
    "horodatage-modification",
    "horodatage-export",
    "uri",
)


@mutation({"2.2": ALL_REJECT, "2.3": ONLY_PUBLISHED_REJECTS})
def horodatage_and_uri_on_every_element(formation: etree._Element) -> None:
    """As the national 2.3 flux writes them: all four attributes on every element below the
    formation (action, session, recrutement, lieu-de-formation, adresse, …)."""
    for element in formation.iter():
        if not isinstance(element.tag, str):
            continue
        element.set("horodatage-creation", "2019-05-02T08:00:00+02:00")
        element.set("horodatage-modification", "2026-11-30T17:42:05.250+01:00")
        element.set("horodatage-export", "2026-12-02T23:00:00Z")
        element.set("uri", "https://www.intercarif.org/lheo/" + etree.QName(element).localname)


@mutation({"2.2": ALL_REJECT, "2.3": ONLY_PUBLISHED_REJECTS})
def horodatage_export_on_session_without_timezone(formation: etree._Element) -> None:
    _one(formation, "action/session").set("horodatage-export", "2026-12-02T23:00:00")


@mutation(ALL_REJECT)
def horodatage_creation_date_without_time(formation: etree._Element) -> None:
    """xs:dateTime needs the time: a bare date is malformed."""
    _one(formation, "action/session").set("horodatage-creation", "2026-12-02")


@mutation(ALL_REJECT)
def horodatage_export_month_13(formation: etree._Element) -> None:
    _child(formation, "action").set("horodatage-export", "2026-13-02T10:00:00Z")


# Extensions


@mutation(ALL_ACCEPT)
def extras_with_arbitrary_content(formation: etree._Element) -> None:
    action = _child(formation, "action")
    extras = _new(action, "extras")
    extras.set("info", "region")
    extra = _new(action, "extra")
    extra.set("info", "dispositif")
    extra.set("code-region", "24")  # any attribute, too
    extra.text = "texte libre "
    inner = etree.SubElement(extra, "{urn:example:region}dispositif", {"annee": "2024"})
    inner.text = "Parcours Métiers"
    etree.SubElement(extra, "sans-espace-de-noms").text = "x"
    extras.append(extra)
    nested = _new(action, "extras")
    nested.append(_new(action, "extra", "imbriqué"))
    extras.append(nested)
    action.append(extras)


@mutation(ALL_ACCEPT)
def empty_extras_and_extra(formation: etree._Element) -> None:
    extras = _new(formation, "extras")
    extras.append(_new(formation, "extra"))
    formation.append(_new(formation, "extras"))
    formation.append(extras)


@mutation(ALL_REJECT)
def extra_holding_an_invalid_lheo_element(formation: etree._Element) -> None:
    """`extra` content is checked laxly: a known LHEO element inside it is validated."""
    extras = _new(formation, "extras")
    extra = _new(formation, "extra")
    extra.append(_new(formation, "intitule-formation", "x" * 300))
    extras.append(extra)
    formation.append(extras)


@mutation(ALL_REJECT)
def text_directly_in_extras(formation: etree._Element) -> None:
    extras = _new(formation, "extras", "texte")
    formation.append(extras)


# --------------------------------------------------------------------------- bases


def _real_base() -> etree._Element:
    return formations(_parse(REAL_DIR / REAL_BASE))[0]


def _fixture_base() -> etree._Element:
    return formations(_parse(FIXTURE_2_3))[0]


def _generator() -> object | None:
    try:
        return importlib.import_module("samples.generator")
    except ModuleNotFoundError as exc:
        if exc.name != "samples.generator":
            raise
        return None


GENERATOR_MISSING = "samples/generator.py (write_offers) is not in the project yet"


def _generated(
    tmp_dir: Path, version: str, *, seed: int, invalid_rate: float
) -> tuple[Path, frozenset[str]]:
    """An offer file written by the project's generator, and the numeros it says it broke."""
    generator = _generator()
    if generator is None:
        pytest.skip(GENERATOR_MISSING)
    destination = tmp_dir / f"offres-{version}-{seed}-{invalid_rate}.xml"
    stats = generator.write_offers(  # type: ignore[attr-defined]
        destination, formations=40, seed=seed, lheo_version=version, invalid_rate=invalid_rate
    )
    return destination, frozenset(stats.invalid_numeros)


def _generated_base(tmp_dir: Path) -> etree._Element:
    """The first generated 2.3 formation holding every element the mutations target."""
    needed = [
        "domaine-formation/code-FORMACODE",
        "objectif-general-formation",
        "session/periode/debut",
        "session/etat-recrutement",
        "session/adresse-inscription/adresse/codepostal",
        "organisme-financeur/code-financeur",
        "action/nombre-heures-centre",
        "action/nombre-heures-total",
        "SIRET-organisme-formation/SIRET",
    ]
    path, _ = _generated(tmp_dir, "2.3", seed=23, invalid_rate=0.0)
    for formation in formations(_parse(path)):
        if all(_all(formation, p) for p in needed):
            return formation
    pytest.skip("no generated 2.3 formation holds every element the mutations target")


BASES: dict[str, tuple[str, Callable[[Path], etree._Element]]] = {
    "real-2.2": ("2.2", lambda _tmp: _real_base()),
    "fixture-2.3": ("2.3", lambda _tmp: _fixture_base()),
    "generated-2.3": ("2.3", _generated_base),
}


@pytest.fixture(scope="module")
def base_formations(
    tmp_path_factory: pytest.TempPathFactory, shared_dir: Path
) -> Iterator[Callable[[str], etree._Element]]:
    cache: dict[str, etree._Element] = {}
    tmp_dir = tmp_path_factory.mktemp("bases")

    def get(name: str) -> etree._Element:
        if name not in cache:
            cache[name] = BASES[name][1](tmp_dir)
        return copy.deepcopy(cache[name])

    yield get


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("version", sorted(NAMESPACES))
def test_bases_are_valid_for_both(
    version: str, schemas: dict[str, Schemas], base_formations: Callable[[str], etree._Element]
) -> None:
    for name, (base_version, _) in BASES.items():
        if base_version != version or (name.startswith("generated") and _generator() is None):
            continue
        verdicts, errors = schemas[version].judge(wrap(base_formations(name), version))
        assert verdicts == (True, True), f"{name}: {errors}"


@pytest.mark.parametrize("base", sorted(BASES))
@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.name)
def test_mutation(
    mutation: Mutation,
    base: str,
    schemas: dict[str, Schemas],
    base_formations: Callable[[str], etree._Element],
) -> None:
    version = BASES[base][0]
    formation = base_formations(base)
    before = etree.tostring(formation)
    mutation.apply(formation)
    assert etree.tostring(formation) != before, "the mutation changed nothing"
    verdicts, errors = schemas[version].judge(wrap(formation, version))
    _full, published, project = mutation.expected[version]
    assert verdicts == (published, project), errors


def _real_records() -> list[str]:
    return sorted(p.name for p in REAL_DIR.glob("*.xml")) if REAL_DIR.is_dir() else []


@pytest.mark.parametrize(
    "record",
    _real_records()
    or [pytest.param("-", marks=pytest.mark.skip(reason="../shared is absent: no real records"))],
)
def test_real_records_same_verdict(record: str, schemas: dict[str, Schemas]) -> None:
    found = formations(_parse(REAL_DIR / record))
    assert found, f"{record}: no formation"
    for formation in found:
        verdicts, errors = schemas["2.2"].judge(wrap(formation, "2.2"))
        assert verdicts == (True, True), f"{record}: {errors}"


def test_real_records_are_all_there(shared_dir: Path) -> None:
    assert len(_real_records()) == 18


@pytest.mark.parametrize("invalid_rate", [0.0, 0.3])
@pytest.mark.parametrize("version", sorted(NAMESPACES))
def test_generated_offers_same_verdict(
    version: str, invalid_rate: float, schemas: dict[str, Schemas], tmp_path: Path
) -> None:
    path, broken = _generated(tmp_path, version, seed=2024, invalid_rate=invalid_rate)
    rejected = set()
    count = 0
    for formation in formations(_parse(path)):
        count += 1
        number = formation.get("numero", "")
        verdicts, errors = schemas[version].judge(wrap(formation, version))
        assert verdicts in ((True, True), (False, False)), f"formation {number}: {errors}"
        if verdicts == (False, False):
            rejected.add(number)
    assert count == 40
    assert rejected == broken, "the formations rejected are not those the generator broke"
    assert bool(broken) == (invalid_rate > 0)


def _every_document(
    base_formations: Callable[[str], etree._Element],
) -> Iterator[tuple[str, str, etree._ElementTree]]:
    for record in _real_records():
        for formation in formations(_parse(REAL_DIR / record)):
            yield f"real {record}", "2.2", wrap(formation, "2.2")
    for base, (version, _) in BASES.items():
        if base.startswith("generated") and _generator() is None:
            continue
        for mutation in MUTATIONS:
            formation = base_formations(base)
            mutation.apply(formation)
            yield f"{base} {mutation.name}", version, wrap(formation, version)


def _variants(reference_dir: Path, variant: str) -> dict[str, etree.XMLSchema]:
    tool = _load_tool()
    schemas = {}
    for version in NAMESPACES:
        language = tool.read_definition(reference_dir / DEFINITIONS[version])  # type: ignore[attr-defined]
        data = tool.render(language, source_name=DEFINITIONS[version], variant=variant)  # type: ignore[attr-defined]
        schemas[version] = etree.XMLSchema(etree.fromstring(data, SAFE_PARSER))
    return schemas


def _carries_timestamps(document: etree._ElementTree) -> bool:
    return any(
        name in element.attrib
        for element in document.iter()
        if isinstance(element.tag, str)
        for name in TIMESTAMP_ATTRIBUTES
    )


def test_full_definition_variant_differs_only_on_those_rules(
    reference_dir: Path,
    schemas: dict[str, Schemas],
    base_formations: Callable[[str], etree._Element],
) -> None:
    """Keeping the three rules the published schemas leave out changes exactly the verdicts
    the mutations predict, and nothing else."""
    variants = _variants(reference_dir, "full")
    expected_by_label = {
        f"{base} {m.name}": m.expected[version][0]
        for base, (version, _) in BASES.items()
        for m in MUTATIONS
    }
    disagreements = []
    differences = 0
    count = 0
    for label, version, document in _every_document(base_formations):
        count += 1
        full, _ = verdict(variants[version], document)
        published, _ = verdict(schemas[version].published, document)
        expected = expected_by_label.get(label, published)
        differences += full != published
        if full != expected:
            disagreements.append(label)
    assert count > 2 * len(MUTATIONS)
    assert differences > 0, "the full-definition variant should differ on some mutations"
    assert not disagreements


def test_project_schema_departs_from_the_published_one_only_on_timestamps(
    schemas: dict[str, Schemas], base_formations: Callable[[str], etree._Element]
) -> None:
    """On every document (real records, every mutation of every base) that carries no
    horodatage-* / uri attribute, the project's schema gives the published verdict; every
    document where they differ carries one (and the project accepts it)."""
    same = differing = 0
    for label, version, document in _every_document(base_formations):
        (published, project), errors = schemas[version].judge(document)
        if _carries_timestamps(document):
            if published != project:
                differing += 1
                assert project and not published, f"{label}: {errors}"
            continue
        same += 1
        assert published == project, f"{label}: {errors}"
    assert same > 100 and differing >= 4


def test_published_variant_is_the_published_schema(
    reference_dir: Path,
    schemas: dict[str, Schemas],
    base_formations: Callable[[str], etree._Element],
) -> None:
    """The tool's `published` variant gives the published schema's verdict everywhere: the
    comparisons above compare the project with what the LHEO toolchain really checks."""
    variants = _variants(reference_dir, "published")
    for label, version, document in _every_document(base_formations):
        ours, _ = verdict(variants[version], document)
        theirs, errors = verdict(schemas[version].published, document)
        assert ours == theirs, f"{label}: {errors}"


def test_real_flux_timestamps_fixture(schemas: dict[str, Schemas]) -> None:
    """The project's own 2.3 fixture with the four attributes on every element: accepted by
    the project's schema, refused by the published one (the defect: it was quarantined)."""
    document = _parse(FIXTURE_TIMESTAMPS)
    found = formations(document)
    assert found
    for formation in found:
        assert all(
            "horodatage-export" in e.attrib for e in formation.iter() if isinstance(e.tag, str)
        )
        (published, project), errors = schemas["2.3"].judge(wrap(formation, "2.3"))
        assert (published, project) == (False, True), errors


@pytest.mark.parametrize("version", sorted(NAMESPACES))
def test_committed_schema_is_what_the_tool_writes(version: str, reference_dir: Path) -> None:
    """lheo_schemas/*.xsd are up to date with the tool and the definitions."""
    tool = _load_tool()
    language = tool.read_definition(reference_dir / DEFINITIONS[version])  # type: ignore[attr-defined]
    data = tool.render(language, source_name=DEFINITIONS[version])  # type: ignore[attr-defined]
    assert schema_path(version).read_bytes() == data, (
        f"regenerate: python tools/lheo_xsd_from_definition.py "
        f"{DEFINITIONS[version]} -o lheo_schemas/lheo-{version}.xsd"
    )
