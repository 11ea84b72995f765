"""Hostile and broken LHEO documents through `kairos-sync load` (docs/reliability.md).

Each case, on SQLite and PostgreSQL, after a good snapshot is loaded: exit 2, a message
naming the file and the problem, the database exactly as before, and a `failed` ledger
row saying the same thing. The reader's own unit tests are in tests/test_reader.py.
"""

from __future__ import annotations

import copy
import gzip
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree
from rel_helpers import NS22, NS23, edited, generated, ledger, query, state
from typer.testing import CliRunner

from pipelines.cli import app

runner = CliRunner()
PASSWD_MARKERS = ("root:x:0:0", "/bin/bash", "/usr/sbin/nologin")


def _q(name: str, ns: str = NS23) -> str:
    return f"{{{ns}}}{name}"


def _replace_once(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    def mutate(data: bytes) -> bytes:
        assert old in data, old
        return data.replace(old, new, 1)

    return mutate


def _mixed_versions(root: etree._Element) -> None:
    """A 2.3 document whose first formation is written in the 2.2 namespace."""
    offres = root.find(_q("offres"))
    assert offres is not None
    first = offres.find(_q("formation"))
    assert first is not None
    foreign = etree.fromstring(etree.tostring(first).replace(NS23.encode(), NS22.encode()))
    offres.replace(first, foreign)


HUGE = 11 * 1024 * 1024  # libxml2's limit on one text node without XML_PARSE_HUGE is 10 MB

# name → (how the file is made from the good snapshot's bytes, expected message fragment)
CASES: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "empty": (lambda data: b"", "file is empty"),
    "not_xml_csv": (lambda data: b"numero;siret\nF1;123\n", "not an XML document"),
    "binary": (lambda data: bytes(range(256)) * 4, "not an XML document"),
    "wrong_root": (
        lambda data: b'<?xml version="1.0"?><offres xmlns="http://lheo.gouv.fr/2.3"/>',
        "root element is <offres>, expected <lheo>",
    ),
    "no_namespace": (
        _replace_once(b'<lheo xmlns="http://lheo.gouv.fr/2.3">', b"<lheo>"),
        "unknown namespace",
    ),
    "unknown_namespace": (
        _replace_once(b'xmlns="http://lheo.gouv.fr/2.3">', b'xmlns="http://example.org/lheo">'),
        "unknown namespace 'http://example.org/lheo'",
    ),
    "truncated_plain": (lambda data: data[: len(data) * 2 // 3], "truncated XML"),
    "truncated_gzip": (
        lambda data: gzip.compress(data)[: len(gzip.compress(data)) // 2],
        "truncated or corrupt gzip stream",
    ),
    "corrupt_gzip": (
        lambda data: gzip.compress(data)[:20] + b"\xff" * 200,
        "truncated or corrupt gzip stream",
    ),
    "xxe_local_file": (
        lambda data: (
            b'<?xml version="1.0"?>\n<!DOCTYPE lheo [<!ENTITY x SYSTEM '
            b'"file:///etc/passwd">]>\n<lheo xmlns="http://lheo.gouv.fr/2.3"><offres>&x;'
            b"</offres></lheo>"
        ),
        "declares a DOCTYPE",
    ),
    "entity_bomb": (
        lambda data: (
            b'<?xml version="1.0"?>\n<!DOCTYPE lheo [<!ENTITY a "aaaaaaaaaa">'
            + b"".join(
                b'<!ENTITY %s "%s">' % (bytes([c]), (b"&%s;" % bytes([c - 1])) * 10)
                for c in range(ord("b"), ord("j"))
            )
            + b']>\n<lheo xmlns="http://lheo.gouv.fr/2.3"><offres>&i;</offres></lheo>'
        ),
        "entit",  # libxml2's amplification guard or our DOCTYPE refusal
    ),
    "external_dtd": (
        _replace_once(b"<lheo ", b'<!DOCTYPE lheo SYSTEM "http://127.0.0.1:9/lheo.dtd">\n<lheo '),
        "declares a DOCTYPE",
    ),
    "undeclared_entity": (
        _replace_once(b"</intitule-formation>", b"&passwd;</intitule-formation>"),
        "entit",
    ),
    "huge_text_node": (
        _replace_once(b"</intitule-formation>", b"A" * HUGE + b"</intitule-formation>"),
        "Text node too long",
    ),
    "deep_nesting": (
        _replace_once(b"<offres>", b"<offres>" + b"<x>" * 300 + b"</x>" * 300),
        "Excessive depth",
    ),
    "declared_utf16_is_utf8": (
        _replace_once(b'encoding="utf-8"', b'encoding="UTF-16"'),
        "malformed XML at line 1",
    ),
    "declared_utf8_has_latin1_bytes": (
        _replace_once(b"</intitule-formation>", "é</intitule-formation>".encode("latin-1")),
        "Invalid bytes in character encoding",
    ),
}


@pytest.fixture
def loaded(db: str, tmp_path: Path, config_file: Path) -> tuple[str, Path, Path]:
    """A database holding one good snapshot of source `occ`, and that snapshot's path."""
    good = generated(tmp_path, formations=12)
    result = runner.invoke(
        app, ["load", str(good), "--source", "occ", "--config", str(config_file), "--db", db]
    )
    assert result.exit_code == 0, result.output
    return db, good, config_file


def _refused(db: str, config: Path, file: Path, fragment: str) -> None:
    before, runs_before = state(db), ledger(db)
    result = runner.invoke(
        app, ["load", str(file), "--source", "occ", "--config", str(config), "--db", db]
    )
    assert result.exit_code == 2, (file.name, result.output)
    assert f"error: {file}" in result.output, result.output
    assert fragment in result.output, result.output
    assert "Traceback" not in result.output
    assert state(db) == before, f"{file.name}: a refused document changed the database"
    runs = ledger(db)
    assert len(runs) == len(runs_before) + 1, "exactly one ledger row per refused run"
    last = runs[-1]
    assert last.status == "failed"
    assert last.finished_at is not None
    assert str(file) in last.error and fragment in last.error, last.error
    for marker in PASSWD_MARKERS:
        assert marker not in result.output and marker not in last.error


@pytest.mark.slow  # ~10 s on PostgreSQL: 18 CLI runs, each migrating first
def test_hostile_documents_are_refused_whole_and_change_nothing(
    loaded: tuple[str, Path, Path], tmp_path: Path
) -> None:
    db, good, config = loaded
    data = good.read_bytes()
    for name, (make, fragment) in CASES.items():
        suffix = ".xml.gz" if "gzip" in name else ".xml"
        file = tmp_path / f"{name}{suffix}"
        file.write_bytes(make(data))
        _refused(db, config, file, fragment)


def test_mixed_lheo_versions_in_one_document_are_refused(
    loaded: tuple[str, Path, Path], tmp_path: Path
) -> None:
    """Formerly the foreign formation was silently skipped and its sessions closed."""
    db, good, config = loaded
    mixed = edited(good, tmp_path / "mixed.xml", _mixed_versions)
    _refused(db, config, mixed, "mixed LHEO versions: <formation> in namespace")


def test_mixed_lheo_versions_in_one_run(loaded: tuple[str, Path, Path], tmp_path: Path) -> None:
    """One run, two sources of different versions: each gets its own; a document of the
    wrong version for its source is refused (SnapshotRefused) without touching the other."""
    db, _good, config = loaded
    v22 = generated(tmp_path, formations=8, version="2.2", seed=3)
    result = runner.invoke(
        app, ["load", str(v22), "--source", "nor", "--config", str(config), "--db", db]
    )
    assert result.exit_code == 0, result.output
    _refused(db, config, v22, "LHEO 2.2 document, but source 'occ' is configured as LHEO 2.3")
    versions = query(
        db, "SELECT source, lheo_version, status FROM run_ledger WHERE status <> 'failed'"
    )
    assert {(r.source, r.lheo_version) for r in versions} == {("occ", "2.3"), ("nor", "2.2")}


def test_xinclude_is_never_processed(loaded: tuple[str, Path, Path], tmp_path: Path) -> None:
    """An XInclude of /etc/passwd is an unknown element: its formation is quarantined and
    the file's content is nowhere in the database."""
    db, good, config = loaded

    def include(root: etree._Element) -> None:
        formation = root.find(f"{_q('offres')}/{_q('formation')}")
        assert formation is not None
        xi = etree.SubElement(formation, "{http://www.w3.org/2001/XInclude}include")
        xi.set("href", "/etc/passwd")
        xi.set("parse", "text")
        formation.insert(0, copy.copy(xi))

    file = edited(good, tmp_path / "xinclude.xml", include)
    result = runner.invoke(
        app, ["load", str(file), "--source", "occ", "--config", str(config), "--db", db]
    )
    assert result.exit_code == 0, result.output
    assert ledger(db)[-1].formations_quarantined == 1
    dump = repr(state(db))
    for marker in PASSWD_MARKERS:
        assert marker not in dump
