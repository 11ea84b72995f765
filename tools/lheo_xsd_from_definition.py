"""Write the project's XML schema (XSD) for one LHEO version from its language definition.

The LHEO language is published as a *language definition*: an XML file made of
``definition`` elements (one per LHEO element: French full name, documentation,
content model, attributes) and ``dict`` elements (code lists).  This tool reads such a
file and writes an XSD 1.0 schema with the project's own layout:

* one named simple type per dictionary (``dict-...``), each code an ``xs:enumeration``
  documented with its French label;
* one shared simple type per distinct text length (``texte-1-255``), integer range
  (``entier-0-99999``) and one for LHEO dates (``date-lheo``);
* one attribute group per distinct attribute list (``attributs-communs`` for the usual
  ``numero info ref id idref tag``);
* one named type per definition (``type-formation``) and one global element per
  definition, annotated with the element's French full name, so that a validation
  error can be explained in plain words.

How the definition language maps to XSD:

=====================================  ==================================================
definition                             XSD
=====================================  ==================================================
``element name min max``               ``xs:element ref`` (no min/max: exactly once;
                                       ``max="0"``: unbounded)
``sequence`` / ``choice min max``      ``xs:sequence`` / ``xs:choice``
``basic_text lgmin lgmax``             ``xs:string`` with ``minLength`` / ``maxLength``
``basic_key ref="dict-..."``           the dictionary's ``xs:token`` enumeration
``basic_int vmin vmax``                ``xs:long`` with ``minInclusive`` / ``maxInclusive``
``basic_date vmin vmax``               ``xs:token`` matching ``AAAAMMJJ`` as the LHEO
                                       toolchain checks it (month ``[019][0-9]``, day
                                       ``[01239][0-9]``: ``00000000``, ``AAAAMM00``,
                                       ``AAAA0000`` and ``99999999`` are valid)
``basic_any``                          any content and attributes (``xs:anyType``)
``attribute_text`` / ``_id`` /         ``xs:string`` / ``xs:ID`` / ``xs:IDREF`` /
``_idref`` / ``_datetime`` / ``_uri``  ``xs:dateTime`` / ``xs:anyURI``
``attribute type="required"``          ``use="required"``
=====================================  ==================================================

Three variants (``--variant``):

* ``project`` (the default, what ``lheo_schemas/`` holds): the rules the national LHEO
  toolchain's published schemas check, plus the 2.3 ``attribute_datetime`` /
  ``attribute_uri`` attributes (``horodatage-creation``, ``horodatage-modification``,
  ``horodatage-export``, ``uri``) declared, typed ``xs:dateTime`` / ``xs:anyURI``: the 2.3
  change log adds them to every element, the national 2.3 flux writes them, and the schemas
  its production consumers validate with declare them. The published 2.3 schema does not,
  so it would quarantine real records;
* ``published``: the published schemas' rules exactly (integer ranges, required attributes
  and the 2.3 datetime/uri attributes left out), for the conformance test;
* ``full``: every rule of the definition, for the conformance test as well.

So the project's schema gives the published verdict on every record that carries no
``horodatage-*`` / ``uri`` attribute, and accepts those attributes when they are well typed
(tests/conformance shows both; see docs/schemas.md).

Usage::

    python tools/lheo_xsd_from_definition.py DEFINITION.xml -o lheo_schemas/lheo-2.X.xsd
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

XS_NS = "http://www.w3.org/2001/XMLSchema"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
TOOL = "tools/lheo_xsd_from_definition.py"
TNS = "lheo"  # prefix of the target namespace in the written schema

#: Date as the LHEO toolchain checks it: 8 digits, month 00-19 or 90-99, day 00-39 or 90-99.
DATE_PATTERN = "[0-9]{4}[019][0-9][01239][0-9]"
DATE_BOUNDS = ("00000000", "99999999")

ATTRIBUTE_TYPES = {
    "attribute_text": "xs:string",
    "attribute_id": "xs:ID",
    "attribute_idref": "xs:IDREF",
    "attribute_datetime": "xs:dateTime",
    "attribute_uri": "xs:anyURI",
}
#: Attribute kinds the published LHEO schemas do not declare at all (2.3 horodatage-*, uri).
UNPUBLISHED_ATTRIBUTE_KINDS = frozenset({"attribute_datetime", "attribute_uri"})
#: The schemas this tool writes (module docstring): the project's, and two for comparisons.
VARIANTS = ("project", "published", "full")


class DefinitionError(ValueError):
    """The language definition uses something this tool does not know how to write."""


def _local(node: etree._Element) -> str:
    return etree.QName(node).localname


def _children(node: etree._Element, name: str | None = None) -> list[etree._Element]:
    """Element children of ``node`` (comments skipped), optionally only those named ``name``."""
    return [
        child
        for child in node
        if isinstance(child.tag, str) and (name is None or _local(child) == name)
    ]


def _one(node: etree._Element, name: str) -> etree._Element:
    found = _children(node, name)
    if len(found) != 1:
        raise DefinitionError(f"<{_local(node)}> must have one <{name}>, found {len(found)}")
    return found[0]


def _text(node: etree._Element | None) -> str:
    """Text of a documentation node with whitespace runs folded to one space."""
    if node is None:
        return ""
    return " ".join("".join(str(part) for part in node.itertext()).split())


def _required(node: etree._Element, attribute: str) -> str:
    value = node.get(attribute)
    if value is None:
        raise DefinitionError(f"<{_local(node)}> lacks the {attribute!r} attribute")
    return value


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Attribute:
    """One attribute of a definition."""

    name: str
    kind: str  # attribute_text, attribute_id, ...
    required: bool


@dataclass(frozen=True)
class Particle:
    """A child element reference in a content model, with its cardinality."""

    name: str
    min_occurs: int
    max_occurs: int | None  # None: unbounded


@dataclass(frozen=True)
class Content:
    """The content model of a definition (its ``element_type``)."""

    kind: str  # sequence, choice, text, key, int, date, any
    particles: tuple[Particle, ...] = ()
    min_occurs: int = 1  # of the choice group
    max_occurs: int | None = 1
    bounds: tuple[str, str] = ("", "")  # lgmin/lgmax, vmin/vmax
    dictionary: str = ""


@dataclass(frozen=True)
class Definition:
    """One LHEO element."""

    name: str
    fullname: str
    content: Content
    attributes: tuple[Attribute, ...]


@dataclass(frozen=True)
class Dictionary:
    """One code list: (code, French label) pairs in the definition's order."""

    name: str
    fullname: str
    entries: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Language:
    """A whole language definition."""

    version: str
    namespace: str
    definitions: tuple[Definition, ...]
    dictionaries: tuple[Dictionary, ...]


def _cardinality(node: etree._Element) -> tuple[int, int | None]:
    """``min``/``max`` of an element or choice: absent means 1, ``max="0"`` unbounded."""
    low = int(node.get("min", "1"))
    high_text = node.get("max", "1")
    high = None if high_text == "0" else int(high_text)
    if high is not None and high < low:
        raise DefinitionError(f"<{_local(node)} name={node.get('name')!r}> has max < min")
    return low, high


def _fullname(node: etree._Element) -> str:
    names = _children(node, "fullname")
    french = [n for n in names if n.get(XML_LANG, "fr") == "fr"] or names
    return _text(french[0]) if french else ""


def _content(element_type: etree._Element, owner: str) -> Content:
    body = _children(element_type)
    if len(body) != 1:
        raise DefinitionError(f"{owner}: element_type must have exactly one child")
    node = body[0]
    kind = _local(node)
    if kind == "sequence":
        particles = []
        for child in _children(node):
            if _local(child) != "element":
                raise DefinitionError(f"{owner}: unexpected <{_local(child)}> in a sequence")
            low, high = _cardinality(child)
            particles.append(Particle(_required(child, "name"), low, high))
        return Content("sequence", tuple(particles))
    if kind == "choice":
        low, high = _cardinality(node)
        options = []
        for child in _children(node):
            if _local(child) != "choice_element":
                raise DefinitionError(f"{owner}: unexpected <{_local(child)}> in a choice")
            options.append(Particle(_required(child, "name"), 1, 1))
        return Content("choice", tuple(options), min_occurs=low, max_occurs=high)
    if kind == "basic_text":
        bounds = (_required(node, "lgmin"), _required(node, "lgmax"))
        return Content("text", bounds=bounds)
    if kind == "basic_key":
        return Content("key", dictionary=_required(node, "ref"))
    if kind == "basic_int":
        return Content("int", bounds=(_required(node, "vmin"), _required(node, "vmax")))
    if kind == "basic_date":
        bounds = (node.get("vmin", DATE_BOUNDS[0]), node.get("vmax", DATE_BOUNDS[1]))
        if bounds != DATE_BOUNDS:
            raise DefinitionError(f"{owner}: date bounds {bounds} cannot be written as XSD")
        return Content("date", bounds=bounds)
    if kind == "basic_any":
        return Content("any")
    raise DefinitionError(f"{owner}: unknown element_type <{kind}>")


def _attribute(node: etree._Element, owner: str) -> Attribute:
    kinds = _children(_one(node, "attribute_type"))
    if len(kinds) != 1 or _local(kinds[0]) not in ATTRIBUTE_TYPES:
        raise DefinitionError(f"{owner}: unknown type for attribute {node.get('name')!r}")
    use = node.get("type", "optional")
    if use not in ("optional", "required"):
        raise DefinitionError(f"{owner}: attribute type {use!r} is neither optional nor required")
    return Attribute(_required(node, "name"), _local(kinds[0]), use == "required")


def read_definition(path: Path) -> Language:
    """Parse a language definition file (any version of the definition namespace)."""
    root = etree.parse(str(path)).getroot()
    if _local(root) != "definitions":
        raise DefinitionError(f"{path}: root is <{_local(root)}>, not <definitions>")
    prefix = root.get("default_ns_prefix", "lheo")
    namespaces = {n.get("ns_prefix"): n.get("href") for n in root.iterfind("{*}namespace")}
    namespace = namespaces.get(prefix)
    if not namespace:
        raise DefinitionError(f"{path}: no <namespace> for prefix {prefix!r}")
    definitions = []
    for node in root.iterfind("{*}definition"):
        name = _required(node, "name")
        definitions.append(
            Definition(
                name=name,
                fullname=_fullname(node),
                content=_content(_one(node, "element_type"), name),
                attributes=tuple(_attribute(a, name) for a in _children(node, "attribute")),
            )
        )
    dictionaries = []
    for node in root.iterfind("{*}dict"):
        entries = []
        for entry in _children(node, "entry"):
            labels = [v.get("val", "") for v in _children(entry, "value")]
            for key in _children(entry, "key"):
                entries.append((_required(key, "val"), labels[0] if labels else ""))
        dictionaries.append(Dictionary(_required(node, "name"), _fullname(node), tuple(entries)))
    language = Language(
        _required(root, "version"), namespace, tuple(definitions), tuple(dictionaries)
    )
    _check_references(language)
    return language


def _check_references(language: Language) -> None:
    names = {d.name for d in language.definitions}
    dictionaries = {d.name for d in language.dictionaries}
    if len(names) != len(language.definitions):
        raise DefinitionError("a definition name is used twice")
    for definition in language.definitions:
        for particle in definition.content.particles:
            if particle.name not in names:
                raise DefinitionError(f"{definition.name}: no definition for {particle.name!r}")
        if definition.content.kind == "key" and definition.content.dictionary not in dictionaries:
            raise DefinitionError(
                f"{definition.name}: no dictionary {definition.content.dictionary}"
            )


# --------------------------------------------------------------------------- writing


class SchemaWriter:
    """Builds the XSD tree of one language."""

    def __init__(self, language: Language, *, variant: str = "project") -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r} (one of {', '.join(VARIANTS)})")
        self.language = language
        self.variant = variant
        # Integer ranges and required attributes: checked by the full definition only.
        self.like_published = variant != "full"
        self.root = etree.Element(
            f"{{{XS_NS}}}schema",
            nsmap={"xs": XS_NS, TNS: language.namespace},
            targetNamespace=language.namespace,
            elementFormDefault="qualified",
        )
        self.root.set(XML_LANG, "fr")
        self._attribute_groups: dict[tuple[Attribute, ...], str] = {}

    # -- small helpers

    def _xs(self, parent: etree._Element, tag: str, **attributes: str) -> etree._Element:
        return etree.SubElement(parent, f"{{{XS_NS}}}{tag}", attributes)

    def _document(self, parent: etree._Element, text: str) -> None:
        if text:
            annotation = self._xs(parent, "annotation")
            self._xs(annotation, "documentation").text = text

    def _section(self, title: str) -> None:
        self.root.append(etree.Comment(f" {title} "))

    # -- the parts of the schema

    def write(self) -> etree._Element:
        """Return the ``xs:schema`` element: dictionaries, value types, attributes, elements."""
        self._write_dictionaries()
        self._write_value_types()
        self._write_attribute_groups()
        self._section("Éléments LHEO, dans l'ordre de la définition du langage")
        for definition in self.language.definitions:
            self._write_definition(definition)
        return self.root

    def _write_dictionaries(self) -> None:
        self._section("Dictionnaires (listes de codes)")
        for dictionary in self.language.dictionaries:
            simple = self._xs(self.root, "simpleType", name=dictionary.name)
            self._document(simple, dictionary.fullname)
            restriction = self._xs(simple, "restriction", base="xs:token")
            for code, label in dictionary.entries:
                self._document(self._xs(restriction, "enumeration", value=code), label)

    def _value_type_name(self, content: Content) -> str:
        low, high = content.bounds
        if content.kind == "text":
            return f"texte-{low}-{high}"
        if content.kind == "int":
            return "entier" if self.like_published else f"entier-{low}-{high}"
        if content.kind == "date":
            return "date-lheo"
        if content.kind == "key":
            return content.dictionary
        raise AssertionError(content.kind)

    def _write_value_types(self) -> None:
        self._section("Types de valeurs partagés (textes, entiers, dates)")
        written: set[str] = set()
        for definition in self.language.definitions:
            content = definition.content
            if content.kind not in ("text", "int", "date"):
                continue
            name = self._value_type_name(content)
            if name in written:
                continue
            written.add(name)
            simple = self._xs(self.root, "simpleType", name=name)
            low, high = content.bounds
            if content.kind == "text":
                self._document(simple, f"Texte de {low} à {high} caractères.")
                restriction = self._xs(simple, "restriction", base="xs:string")
                if int(low) > 0:
                    self._xs(restriction, "minLength", value=low)
                self._xs(restriction, "maxLength", value=high)
            elif content.kind == "int":
                if self.like_published:
                    self._document(simple, "Entier (bornes non contrôlées).")
                    self._xs(simple, "restriction", base="xs:long")
                    continue
                self._document(simple, f"Entier de {low} à {high}.")
                restriction = self._xs(simple, "restriction", base="xs:long")
                self._xs(restriction, "minInclusive", value=low)
                self._xs(restriction, "maxInclusive", value=high)
            else:
                self._document(
                    simple,
                    "Date AAAAMMJJ : 00000000 = début inconnu, 99999999 = fin inconnue, "
                    "AAAAMM00 = un mois, AAAA0000 = une année.",
                )
                restriction = self._xs(simple, "restriction", base="xs:token")
                self._xs(restriction, "pattern", value=DATE_PATTERN)

    def _kept_attributes(self, definition: Definition) -> tuple[Attribute, ...]:
        if not self.like_published:
            return definition.attributes
        return tuple(
            Attribute(a.name, a.kind, required=False)
            for a in definition.attributes
            if self.variant == "project" or a.kind not in UNPUBLISHED_ATTRIBUTE_KINDS
        )

    def _write_attribute_groups(self) -> None:
        self._section("Groupes d'attributs")
        usage: dict[tuple[Attribute, ...], list[str]] = {}
        for definition in self.language.definitions:
            usage.setdefault(self._kept_attributes(definition), []).append(definition.name)
        ordered = sorted(usage.items(), key=lambda item: -len(item[1]))
        for rank, (attributes, users) in enumerate(ordered):
            name = "attributs-communs" if rank == 0 else f"attributs-{users[0]}"
            self._attribute_groups[attributes] = name
            group = self._xs(self.root, "attributeGroup", name=name)
            for attribute in attributes:
                declaration = self._xs(
                    group, "attribute", name=attribute.name, type=ATTRIBUTE_TYPES[attribute.kind]
                )
                if attribute.required:
                    declaration.set("use", "required")

    def _write_particles(self, group: etree._Element, particles: Iterable[Particle]) -> None:
        for particle in particles:
            element = self._xs(group, "element", ref=f"{TNS}:{particle.name}")
            _occurs(element, particle.min_occurs, particle.max_occurs)

    def _write_definition(self, definition: Definition) -> None:
        type_name = f"type-{definition.name}"
        group_ref = f"{TNS}:{self._attribute_groups[self._kept_attributes(definition)]}"
        content = definition.content
        complex_type = self._xs(self.root, "complexType", name=type_name)
        if content.kind in ("sequence", "choice"):
            group = self._xs(complex_type, content.kind)
            if content.kind == "choice":
                _occurs(group, content.min_occurs, content.max_occurs)
            self._write_particles(group, content.particles)
            self._xs(complex_type, "attributeGroup", ref=group_ref)
        elif content.kind == "any":
            complex_content = self._xs(complex_type, "complexContent")
            extension = self._xs(complex_content, "extension", base="xs:anyType")
            self._xs(extension, "attributeGroup", ref=group_ref)
        else:
            simple_content = self._xs(complex_type, "simpleContent")
            base = f"{TNS}:{self._value_type_name(content)}"
            extension = self._xs(simple_content, "extension", base=base)
            self._xs(extension, "attributeGroup", ref=group_ref)
        element = self._xs(self.root, "element", name=definition.name, type=f"{TNS}:{type_name}")
        self._document(element, definition.fullname)


def _occurs(node: etree._Element, low: int, high: int | None) -> None:
    """Set minOccurs/maxOccurs, leaving out XSD's default of 1."""
    if low != 1:
        node.set("minOccurs", str(low))
    if high != 1:
        node.set("maxOccurs", "unbounded" if high is None else str(high))


def render(language: Language, *, source_name: str, variant: str = "project") -> bytes:
    """The XSD document for ``language`` as UTF-8 bytes, with its provenance header."""
    schema = SchemaWriter(language, variant=variant).write()
    tree = etree.ElementTree(schema)
    etree.indent(tree, space="  ")
    header = (
        f"\n  Schéma XML LHEO {language.version} du projet kairos-sync"
        f" (espace de noms {language.namespace}).\n"
        f"  Written by {TOOL} from the LHEO language definition version"
        f" {language.version} ({source_name}).\n"
        "  Do not edit by hand: regenerate it (see docs/schemas.md).\n"
    )
    if variant != "project":
        header += f"  Variant {variant}: for comparisons only, never used by the project.\n"
    body = etree.tostring(tree, encoding="UTF-8", xml_declaration=False)
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<!--' + header.encode() + b"-->\n" + body + b"\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("definition", type=Path, help="LHEO language definition (XML)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="XSD file to write")
    parser.add_argument(
        "--variant",
        choices=VARIANTS,
        default="project",
        help="project (default): the published rules plus the 2.3 horodatage-*/uri attributes;"
        " published / full: for comparisons only",
    )
    args = parser.parse_args(argv)
    try:
        language = read_definition(args.definition)
        data = render(language, source_name=args.definition.name, variant=args.variant)
    except (DefinitionError, etree.XMLSyntaxError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    etree.XMLSchema(etree.fromstring(data))  # refuse to write a schema that does not compile
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(data)
    print(f"{args.output}: LHEO {language.version}, {len(language.definitions)} elements")
    return 0


if __name__ == "__main__":
    sys.exit(main())
