"""Property tests (hypothesis): mutated LHEO documents and KAIROS CSV exports.

Whatever the bytes, the reader yields Formation / QuarantinedRecord or raises
`DocumentError`; the loader loads or refuses with `DocumentError` / `LoadError`; the
exports ingestion loads or refuses with `ExportFileError`. Never another exception, never
a ledger row left 'running', never a partial snapshot.
"""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kairos_export_fixtures import FIXTURES_DIR, PSEUDONYM_KEY
from lxml import etree
from rel_helpers import generated, ledger, state

from pipelines.kairos_exports import ExportFileError, ingest_export
from pipelines.load import LoadError, load_snapshot
from transforms.reader import DocumentError, OfferReader
from transforms.records import Formation, QuarantinedRecord

_BASE_DIR = Path(tempfile.mkdtemp(prefix="kairos-fuzz-"))
BASE_LHEO = generated(_BASE_DIR, formations=3, seed=11).read_bytes()
XML_SNIPPETS = [
    b"<",
    b">",
    b"&",
    b"&amp;",
    b"&x;",
    b"&#0;",
    b"&#xD800;",
    b"]]>",
    b"<![CDATA[x",
    b"\x00",
    b"\xff\xfe",
    b"\xc3",
    "é".encode("latin-1"),
    b'<!DOCTYPE lheo [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
    b'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="/etc/passwd"/>',
    b'<formation numero="F-dup">',
    b"</formation>",
    b'<formation xmlns="http://www.lheo.org/2.2">',
    b"<debut>20260230</debut>",
    b"<SIRET>00000000000000</SIRET>",
    b'numero=""',
    b"<?pi x?>",
    b"<!-- -->",
]


@st.composite
def mutated(draw: st.DrawFn, base: bytes, snippets: list[bytes]) -> bytes:
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "flip", "insert", "delete", "duplicate"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "truncate":
            del data[at:]
        elif kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.sampled_from(snippets))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 200))]
        else:
            end = min(len(data), at + draw(st.integers(1, 2000)))
            data[at:at] = data[at:end]
    raw = bytes(data)
    return gzip.compress(raw) if draw(st.booleans()) else raw


_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"),
    max_size=300,
) | st.sampled_from(
    ["", " ", "00000000000000", "20260230", "99999999", "-1", "1e9", "=1+1", "tab\there\\N\nline\r"]
)


@st.composite
def well_formed(draw: st.DrawFn, base: bytes) -> bytes:
    """Still well-formed XML, with element texts and attributes replaced: what reaches the
    schema, the mapping and the database rather than the parser."""
    root = etree.fromstring(base)
    elements = [e for e in root.iter() if isinstance(e.tag, str)]
    for _ in range(draw(st.integers(1, 8))):
        element = elements[draw(st.integers(0, len(elements) - 1))]
        if element.get("numero") is not None and draw(st.booleans()):
            element.set("numero", draw(_TEXT))
        else:
            element.text = draw(_TEXT)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="utf-8"))


def _read_all(path: Path) -> None:
    try:
        with OfferReader(path, source="fuzz") as reader:
            for item in reader:
                assert isinstance(item, Formation | QuarantinedRecord)
    except DocumentError as exc:
        assert str(exc).startswith(str(path))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated(BASE_LHEO, XML_SNIPPETS) | well_formed(BASE_LHEO))
def test_reader_reads_or_refuses_any_bytes(document: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzz.xml"
        path.write_bytes(document)
        _read_all(path)


def test_loader_loads_or_refuses_cleanly(db: str, config_file: Path, tmp_path: Path) -> None:
    examples = 30 if db.startswith("sqlite") else 12  # a PostgreSQL load costs ~0.4 s

    @settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(mutated(BASE_LHEO, XML_SNIPPETS) | well_formed(BASE_LHEO))
    def check(document: bytes) -> None:
        path = tmp_path / "fuzz.xml"
        path.write_bytes(document)
        before = state(db)
        try:
            entry = load_snapshot(path, source="occ", config=config_file, db_url=db)
        except (DocumentError, LoadError):
            assert state(db) == before
            assert ledger(db)[-1].status == "failed"
        else:
            assert entry.status in ("succeeded", "noop")
        assert "running" not in {r.status for r in ledger(db)}

    check()


CSV_SNIPPETS = [
    b'"',
    b'""',
    b";",
    b"|",
    b"\r\n",
    b"\n",
    b"\r",
    b"=cmd|' /C calc'!A0",
    b"@SUM(A1)",
    b"\x00",
    b"\xef\xbb\xbf",
    b"\xff\xfe",
    "é".encode("latin-1"),
    "é".encode(),
    b"\x81",
    b"31/02/2024",
    b"00000000000000",
    b"99/99/9999",
    b"-12",
]
BASE_CSV = {
    "adherents": (FIXTURES_DIR / "adherents_utf8_pipe.csv").read_bytes(),
    "training-plans": (FIXTURES_DIR / "training_plans_utf8bom_pipe.csv").read_bytes(),
    "appointments": (FIXTURES_DIR / "appointments_utf8_semicolon.csv").read_bytes(),
}


@pytest.mark.parametrize("kind", sorted(BASE_CSV))
def test_exports_ingestion_loads_or_refuses_cleanly(
    sqlite_url: str, tmp_path: Path, kind: str
) -> None:
    from core.db import get_engine, migrate

    engine = get_engine(sqlite_url)
    migrate(engine)  # the DAG's migrate task, before any ingestion
    engine.dispose()

    @settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(mutated(BASE_CSV[kind], CSV_SNIPPETS))
    def check(content: bytes) -> None:
        if content[:2] == b"\x1f\x8b":
            content = gzip.decompress(content)  # exports are never compressed
        path = tmp_path / f"{kind}.csv"
        path.write_bytes(content)
        try:
            result = ingest_export(path, kind=kind, db_url=sqlite_url, pseudonym_key=PSEUDONYM_KEY)  # type: ignore[arg-type]
        except ExportFileError as exc:
            assert str(exc).startswith(str(path))
            assert ledger(sqlite_url)[-1].status == "failed"
        else:
            assert result.status in ("succeeded", "noop")
        assert "running" not in {r.status for r in ledger(sqlite_url)}

    check()
