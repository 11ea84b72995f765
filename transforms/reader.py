"""Streaming, validating LHEO reader.

Reads an LHEO 2.2 or 2.3 document (plain or gzip) with lxml `iterparse`, one `formation`
at a time, so memory stays bounded whatever the file size. Each formation is validated
on its own against the project's schema (lheo_schemas/): valid ones come out as typed
records (transforms.records), invalid ones as `QuarantinedRecord`s carrying the line,
the path of the failing element and a plain message. One bad record never stops the file.

Whole-document failures (empty, not XML, truncated, unknown namespace, wrong root, a
DOCTYPE) raise `DocumentError` naming the file: callers treat the snapshot as refused.
A truncation is only seen when the parser reaches it, possibly after records were
yielded; that is why loading a snapshot is one transaction (pipelines/load.py).

Parsing is locked down: no network, no DTD loading, no entity substitution, and any
document that carries a DOCTYPE is refused whole (LHEO never needs one).
"""

from __future__ import annotations

import gzip
import os
import re
import zlib
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import IO, Any, cast

from lxml import etree

from lheo_schemas import schema_path
from transforms.extract import Extractor, source_line
from transforms.formation_digest import DigestSet, UnchangedFormation, formation_digest
from transforms.records import (
    NAMESPACE_OF,
    NAMESPACES,
    Formation,
    LheoVersion,
    QuarantinedRecord,
    Rejection,
)

GZIP_MAGIC = b"\x1f\x8b"


class DocumentError(Exception):
    """The whole document is refused: nothing downstream may use it."""

    def __init__(self, file: str | os.PathLike[str], message: str) -> None:
        super().__init__(f"{os.fspath(file)}: {message}")
        self.file = os.fspath(file)
        self.reason = message

    def __reduce__(self) -> tuple[type[DocumentError], tuple[str, str]]:
        # Picklable as itself: the parallel load (pipelines/load_parallel.py) re-raises a
        # worker's DocumentError in the loading process.
        return (DocumentError, (self.file, self.reason))


@lru_cache(maxsize=4)
def load_schema(lheo_version: LheoVersion) -> etree.XMLSchema:
    """The project's compiled XSD for a version (parsed once per process)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.XMLSchema(etree.parse(str(schema_path(lheo_version)), parser))


_NS_IN_MESSAGE = re.compile(r"\{[^}]*\}")


def plain_message(message: str) -> str:
    """libxml2's message without namespace URIs, which only hide the element's name."""
    return _NS_IN_MESSAGE.sub("", message).strip()


def readable_path(tree: etree._ElementTree, libxml_path: str | None) -> str:
    """libxml2's positional path (`/*/*/*/*[12]/*[19]`) → `/formation/action/session[2]/…`.

    Resolved on the wrapper document while the record is still in it; local names only,
    with an index where siblings share the name, so a person can find the element.
    """
    if not libxml_path:
        return ""
    try:
        found = tree.xpath(libxml_path)
    except etree.XPathError:
        return libxml_path
    if not isinstance(found, list) or not found or not isinstance(found[0], etree._Element):
        return libxml_path
    steps: list[str] = []
    node: etree._Element | None = found[0]
    while node is not None and etree.QName(node).localname != "offres":
        name = etree.QName(node).localname
        parent = node.getparent()
        if parent is not None:
            same = [c for c in parent.iterchildren(node.tag)]
            if len(same) > 1:
                name = f"{name}[{same.index(node) + 1}]"
        steps.append(name)
        node = parent
    return "/" + "/".join(reversed(steps))


class OfferReader:
    """Iterate over the formations of one LHEO file.

    >>> with OfferReader("offers.xml", source="smf-normandie") as reader:
    ...     for item in reader:          # Formation or QuarantinedRecord
    ...         ...
    ...     reader.counts                # {"formations": …, "valid": …, "quarantined": …}
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        source: str | None = None,
        *,
        shard: tuple[int, int, int] | None = None,
        digests: DigestSet | None = None,
    ) -> None:
        self.path = Path(path)
        self.source = source
        # (index, count, block): validate and extract only the items of blocks
        # `block_number % count == index` (block = `block` consecutive items: formations, and
        # the elements under <offres> that are not read, quarantined in document order); the
        # others are parsed and dropped. Used by the parallel load, one shard per worker.
        # `counts` still counts every formation; `position` is the 0-based document index of
        # the item last yielded.
        self.shard = shard
        self.position = -1
        # With `digests` (transforms/formation_digest.py), every formation's digest is
        # computed after parsing and left in `last_digest` for the caller to record; a
        # formation whose numero is set and whose digest is in `digests` is yielded as an
        # UnchangedFormation, without validation, extraction or mapping. Without it, nothing
        # is hashed.
        self.digests = digests
        self.last_digest: int | None = None
        # `misplaced`: formations found where LHEO never puts them (quarantined, counted in
        # `formations` and `quarantined` too); `elements`: elements under <offres> that are
        # not formations (quarantined, not counted as formations).
        self.counts = {
            "formations": 0,
            "valid": 0,
            "quarantined": 0,
            "unchanged": 0,
            "misplaced": 0,
            "elements": 0,
        }
        self._items = 0
        self._stream: IO[bytes] | None = None
        self._lheo_version: LheoVersion | None = None
        self._parser: Any = None  # the iterparse object: its `root` once the file is read
        self._events: Iterator[tuple[str, Any]] | None = None
        self._done = False

    # -- opening ---------------------------------------------------------------------
    def __enter__(self) -> OfferReader:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def open(self) -> None:
        """Open the file and check its root (version, namespace, no DOCTYPE) before streaming."""
        self._lheo_version = self._check_root(*self._peek_root())
        self._stream = self._open_stream()
        self._parser = etree.iterparse(
            self._stream,
            events=("end",),
            # Any namespace: a formation of another LHEO version is refused, not skipped.
            tag="{*}formation",
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
        )
        self._events = iter(self._parser)

    def _open_stream(self) -> IO[bytes]:
        try:
            raw = self.path.open("rb")
        except OSError as exc:
            raise DocumentError(self.path, f"cannot open file: {exc.strerror or exc}") from exc
        head = raw.read(2)
        raw.seek(0)
        if not head:
            raw.close()
            raise DocumentError(self.path, "file is empty")
        if head == GZIP_MAGIC:
            raw.close()
            return cast(IO[bytes], gzip.open(self.path, "rb"))
        return raw

    def _peek_root(self) -> tuple[etree._Element, etree._Element | None]:
        """Parse only up to the start tag of the root's first child: cheap, and refuses
        non-LHEO files (and an `<offres>` of a foreign namespace) early."""
        parser = etree.XMLPullParser(
            events=("start", "end"), resolve_entities=False, no_network=True, load_dtd=False
        )
        root: etree._Element | None = None
        with self._open_stream() as stream:
            try:
                while True:
                    chunk = stream.read(16384)
                    if not chunk:
                        parser.close()  # raises on an empty or unfinished prolog
                        break
                    parser.feed(chunk)
                    for event, element in parser.read_events():
                        if root is None:
                            root = cast(etree._Element, element)
                        elif event == "start":
                            return root, cast(etree._Element, element)
                        elif element is root:  # the root ended without a child
                            return root, None
            except etree.XMLSyntaxError as exc:
                if root is None:
                    raise DocumentError(self.path, self._syntax_message(exc)) from exc
                # The root's own checks (namespace, DOCTYPE) speak first; the syntax error is
                # met again, with its line, when the document is streamed.
                return root, None
            except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                raise DocumentError(self.path, f"truncated or corrupt gzip stream ({exc})") from exc
        if root is not None:
            return root, None
        raise DocumentError(self.path, "not an XML document: no root element")

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    @property
    def lheo_version(self) -> LheoVersion:
        if self._lheo_version is None:
            raise RuntimeError("OfferReader is not open")
        return self._lheo_version

    # -- whole-document checks -------------------------------------------------------
    def _next_event(self) -> etree._Element | None:
        assert self._events is not None
        try:
            _event, element = next(self._events)
        except StopIteration:
            return None
        except etree.XMLSyntaxError as exc:
            raise DocumentError(self.path, self._syntax_message(exc, self._at_eof())) from exc
        except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise DocumentError(self.path, f"truncated or corrupt gzip stream ({exc})") from exc
        return cast(etree._Element, element)

    def _at_eof(self) -> bool:
        """After a syntax error: did the parser stop because the input ran out?"""
        try:
            return self._stream is not None and self._stream.read(1) == b""
        except (OSError, EOFError, zlib.error):
            return True

    def _syntax_message(self, exc: etree.XMLSyntaxError, at_eof: bool = False) -> str:
        text = str(exc.msg or exc)
        line = exc.lineno
        lowered = text.lower()
        if "premature end of data" in lowered or (at_eof and "extra content" not in lowered):
            kind = "truncated XML (the document ends before <lheo> is closed)"
        elif "start tag expected" in lowered or "document is empty" in lowered:
            kind = "not an XML document"
        elif "entity" in lowered:
            kind = "entity declarations or references are refused"
        else:
            kind = "malformed XML"
        where = f" at line {line}" if line else ""
        return f"{kind}{where}: {text}"

    def _check_root(self, root: etree._Element, first: etree._Element | None) -> LheoVersion:
        docinfo = root.getroottree().docinfo
        if getattr(docinfo, "doctype", "") or docinfo.internalDTD is not None:
            raise DocumentError(
                self.path,
                "the document declares a DOCTYPE; LHEO needs none and DTDs/entities are "
                "refused for safety",
            )
        qname = etree.QName(root)
        version = NAMESPACES.get(qname.namespace or "")
        if version is None:
            known = ", ".join(sorted(NAMESPACES))
            raise DocumentError(
                self.path,
                f"unknown namespace {qname.namespace!r} on root <{qname.localname}>: "
                f"expected one of {known}",
            )
        if qname.localname != "lheo":
            raise DocumentError(
                self.path, f"root element is <{qname.localname}>, expected <lheo> ({version})"
            )
        if first is None:
            return version  # an empty root: the stream says what is wrong with it
        child = etree.QName(first)
        if child.namespace != qname.namespace:
            # `<offres xmlns="urn:other">` would otherwise read as an empty snapshot.
            raise DocumentError(self.path, self._foreign(first, version))
        if child.localname != "offres":
            raise DocumentError(
                self.path,
                f"<{child.localname}> at line {source_line(first)} where LHEO {version} puts "
                "<offres> (the first element under <lheo>)",
            )
        return version

    @staticmethod
    def _foreign(element: etree._Element, version: LheoVersion) -> str:
        """The message refusing a document for an element of another namespace."""
        qname = etree.QName(element)
        where = (
            f"<{qname.localname}> in namespace {qname.namespace!r} at line {source_line(element)}"
        )
        if qname.namespace in NAMESPACES:
            return f"mixed LHEO versions: {where} of a LHEO {version} document"
        return (
            f"foreign namespace: {where} of a LHEO {version} document (expected "
            f"{NAMESPACE_OF[version]!r}); mixed or foreign namespaces below <lheo> are refused"
        )

    # -- iteration -------------------------------------------------------------------
    def __iter__(self) -> Iterator[Formation | QuarantinedRecord | UnchangedFormation]:
        if self._events is None:
            self.open()
        if self._done:
            return
        version = self.lheo_version
        namespace = NAMESPACE_OF[version]
        schema = load_schema(version)
        wrapper = etree.Element(f"{{{namespace}}}lheo", nsmap={None: namespace})  # type: ignore[dict-item]
        offres = etree.SubElement(wrapper, f"{{{namespace}}}offres")
        extractor = Extractor(namespace, version)

        offres_tag = f"{{{namespace}}}offres"
        formation_tag = f"{{{namespace}}}formation"
        strays = _Strays(self, namespace, version)
        element = self._next_event()
        while element is not None:
            parent = element.getparent()
            if parent is not None and parent.tag == offres_tag:
                if element.tag != formation_tag:
                    raise DocumentError(self.path, self._foreign(element, version))
                # Elements met under <offres> before this formation (formations read
                # before it were moved out of the tree): not formations, quarantined.
                for stray in strays.under_offres(parent, until=element):
                    if self._take(stray):
                        yield stray
                self.counts["formations"] += 1
                if self._mine():
                    yield self._check_one(element, offres, schema, extractor)
                else:
                    parent.remove(element)
                    element.clear()
            elif not _inside_formation(element):
                # A formation where LHEO never puts one (inside an unknown element under
                # <offres>, or outside <offres>): not read, quarantined with its place.
                for stray in strays.misplaced(element):
                    if self._take(stray):
                        yield stray
            # else: inside another formation's content (an `extra` holds anything): it is
            # that formation's business, validated and read with it.
            element = self._next_event()
        root = self._parser.root if self._parser is not None else None
        for stray in strays.at_end(root):
            if self._take(stray):
                yield stray
        self._done = True

    def _take(self, record: QuarantinedRecord) -> bool:
        """Count a record the reader could not read; True when this shard yields it."""
        if record.kind == "formation":
            self.counts["formations"] += 1  # every shard counts every formation
        if not self._mine():
            return False
        if record.kind == "formation":
            self.counts["quarantined"] += 1
            self.counts["misplaced"] += 1
        else:
            self.counts["elements"] += 1
        return True

    def _mine(self) -> bool:
        """Take the next document item: True when this reader's shard yields it."""
        index = self._items
        self._items += 1
        shard = self.shard
        if shard is None or (index // shard[2]) % shard[1] == shard[0]:
            self.position = index
            return True
        return False

    def _check_one(
        self,
        element: etree._Element,
        offres: etree._Element,
        schema: etree.XMLSchema,
        extractor: Extractor,
    ) -> Formation | QuarantinedRecord | UnchangedFormation:
        numero = element.get("numero")
        line = source_line(element)
        if self.digests is not None:
            digest = self.last_digest = formation_digest(element)
            if numero and digest in self.digests:
                # Same bytes as a formation loaded before: valid then, valid now (the
                # loader's code and schemas are part of what makes the digests current).
                self.counts["valid"] += 1
                self.counts["unchanged"] += 1
                parent = element.getparent()
                if parent is not None:
                    parent.remove(element)  # as the validated ones are: memory stays flat
                element.clear()
                return UnchangedFormation(numero=numero, digest=digest, line=line)
        offres.append(element)  # moves it: validated alone, wrapped in lheo/offres
        try:
            if schema.validate(offres.getroottree()):
                self.counts["valid"] += 1
                return extractor.formation(element)
            tree = offres.getroottree()
            reasons = tuple(
                Rejection(
                    line=e.line,
                    path=readable_path(tree, e.path),
                    message=plain_message(e.message),
                )
                for e in cast(Iterable[Any], schema.error_log)
            )
            self.counts["quarantined"] += 1
            return QuarantinedRecord(
                source=self.source,
                file=str(self.path),
                numero=numero,
                line=line,
                reasons=reasons,
            )
        finally:
            offres.remove(element)
            element.clear()


def _inside_formation(element: etree._Element) -> bool:
    """Whether `element` lies inside a formation's content (an `extra` takes any content)."""
    return any(
        isinstance(a.tag, str) and a.tag.endswith("}formation") for a in element.iterancestors()
    )


class _Strays:
    """What the reader finds where LHEO puts only formations and is not a formation it
    reads: an element under `<offres>` that is not a `formation` (e.g. `<lot>`), and a
    formation inside such an element or outside `<offres>`. Each becomes a
    `QuarantinedRecord` with its line and path, in document order, and leaves the tree
    (memory stays bounded). An element of another namespace refuses the document. LHEO's
    own `extras` (regional extensions) is allowed under `<offres>` and `<lheo>`."""

    def __init__(self, reader: OfferReader, namespace: str, version: LheoVersion) -> None:
        self.reader = reader
        self.ns = namespace
        self.version = version
        self.offres_tag = f"{{{namespace}}}offres"
        # Containers already reported (their formations were quarantined one by one).
        self.reported: list[etree._Element] = []

    def _record(
        self, kind: str, element: etree._Element, path: str, message: str
    ) -> QuarantinedRecord:
        line = source_line(element)
        return QuarantinedRecord(
            source=self.reader.source,
            file=str(self.reader.path),
            numero=element.get("numero"),
            line=line,
            reasons=(Rejection(line=line, path=path, message=message),),
            kind=kind,
        )

    def _check_namespace(self, element: etree._Element) -> None:
        if etree.QName(element).namespace != self.ns:
            raise DocumentError(self.reader.path, OfferReader._foreign(element, self.version))

    def _is_reported(self, element: etree._Element) -> bool:
        return any(element is container for container in self.reported)

    def _stray(self, child: etree._Element, under_offres: bool) -> Iterator[QuarantinedRecord]:
        if not isinstance(child.tag, str) or self._is_reported(child):
            return
        self._check_namespace(child)
        local = etree.QName(child).localname
        if local == "extras":
            return
        where = "under <offres>" if under_offres else "under <lheo>, outside <offres>"
        yield self._record(
            "element",
            child,
            f"/{local}" if under_offres else f"/lheo/{local}",
            f"element <{local}> at line {source_line(child)} {where} is not a formation: it "
            "was not read (LHEO puts only <formation> and <extras> there)",
        )

    def under_offres(
        self, offres: etree._Element, *, until: etree._Element | None
    ) -> Iterator[QuarantinedRecord]:
        """The children of `offres` before `until` (every child when None), then removed."""
        for child in list(offres):
            if child is until:
                break
            yield from self._stray(child, under_offres=True)
            offres.remove(child)

    def misplaced(self, formation: etree._Element) -> Iterator[QuarantinedRecord]:
        """A formation not directly under `<offres>`: its container (once), then itself."""
        steps = [etree.QName(formation).localname]
        node = formation
        parent = node.getparent()
        while (
            parent is not None and parent.tag != self.offres_tag and parent.getparent() is not None
        ):
            node = parent
            steps.append(etree.QName(node).localname)
            parent = node.getparent()
        under_offres = parent is not None and parent.tag == self.offres_tag
        self._check_namespace(formation)
        self._check_namespace(node)
        path = ("/" if under_offres else "/lheo/") + "/".join(reversed(steps))
        if node is not formation and not self._is_reported(node):
            yield from self._stray(node, under_offres)
            self.reported.append(node)
        container = etree.QName(node).localname
        where = (
            f"inside <{container}> (line {source_line(node)}) under <offres>"
            if under_offres and node is not formation
            else "outside <offres>"
        )
        yield self._record(
            "formation",
            formation,
            path,
            f"formation {where}, where LHEO never puts formations: it was not read, and its "
            "KAIROS sessions are kept as last loaded",
        )
        holder = formation.getparent()
        if holder is not None:
            holder.remove(formation)
        formation.clear()

    def at_end(self, root: etree._Element | None) -> Iterator[QuarantinedRecord]:
        """Once the document is read: what is left under `<offres>` and `<lheo>`."""
        if root is None:
            return
        for child in list(root):
            if not isinstance(child.tag, str):
                continue
            if child.tag == self.offres_tag:
                yield from self.under_offres(child, until=None)
            else:
                yield from self._stray(child, under_offres=False)


def read_offers(
    path: str | os.PathLike[str], source: str | None = None
) -> Iterator[Formation | QuarantinedRecord]:
    """Convenience generator over a file's formations (opens and closes the reader)."""
    with OfferReader(path, source) as reader:
        for record in reader:
            assert not isinstance(record, UnchangedFormation)  # only with `digests`
            yield record
