"""Structural traps of real LHEO files, and formations that turn invalid (pipelines/load.py,
transforms/reader.py), on SQLite and PostgreSQL.

Each trap loaded with exit 0 before, silently: formations inside an unknown element were
skipped and their sessions closed; `<offres xmlns="urn:other">` read as an empty snapshot;
a duplicated numero gave one database on a fresh load and another on the incremental path;
a formation quarantined tonight had its KAIROS sessions closed.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from test_formation_digest import NATURAL, _without_ids
from test_load import CONFIG, edited, generated, last_ledger, query, scalar

from pipelines.load import load_snapshot
from quality_checks.runner import run_checks
from transforms.reader import DocumentError, OfferReader
from transforms.records import QuarantinedRecord


def _formations(root: etree._Element, ns: str) -> list[etree._Element]:
    offres = root.find(f"{{{ns}}}offres")
    assert offres is not None
    return list(offres.iterfind(f"{{{ns}}}formation"))


def _open_sessions(url: str, numero: str) -> int:
    return int(
        scalar(
            url,
            "SELECT COUNT(*) FROM kairos_session WHERE carif_formation_numero = :n"
            " AND closed_at IS NULL",
            n=numero,
        )
    )


def _in_a_lot(count: int) -> Any:
    """Move the first `count` formations into an unknown <lot> element under <offres>."""

    def edit(root: etree._Element, ns: str) -> None:
        formations = _formations(root, ns)
        lot = etree.Element(f"{{{ns}}}lot", numero="LOT-1")
        formations[0].addprevious(lot)
        for formation in formations[:count]:
            lot.append(formation)

    return edit


def test_formations_inside_an_unknown_element_are_quarantined_and_kept(
    db: str, tmp_path: Path
) -> None:
    base = generated(tmp_path)
    first = load_snapshot(base, source="occ", config=CONFIG, db_url=db)
    tree = etree.parse(str(base))
    ns = tree.getroot().nsmap[None]
    hidden = [f.get("numero") for f in _formations(tree.getroot(), ns)[:2]]
    sessions = {n: _open_sessions(db, str(n)) for n in hidden}
    assert all(sessions.values())

    trapped = edited(base, tmp_path / "lot.xml", _in_a_lot(2))
    entry = load_snapshot(trapped, source="occ", config=CONFIG, db_url=db)
    rows = query(
        db,
        "SELECT record_kind, record_key, line, path, reasons FROM quarantine"
        " WHERE run_id = :r ORDER BY id",
        r=entry.run_id,
    )
    misplaced = [r for r in rows if "/lot" in r.path]
    assert [(r.record_kind, r.record_key, r.path) for r in misplaced] == [
        ("element", "LOT-1", "/lot"),
        ("formation", hidden[0], "/lot/formation"),
        ("formation", hidden[1], "/lot/formation"),
    ]
    lines = trapped.read_text(encoding="utf-8").splitlines()
    assert "<lot" in lines[misplaced[0].line - 1]
    assert f'numero="{hidden[1]}"' in lines[misplaced[2].line - 1]
    assert "inside <lot>" in json.loads(misplaced[1].reasons)[0]["message"]
    # Not read, so not vanished: their sessions are kept as last loaded and marked.
    assert entry.sessions_closed == 0
    assert {n: _open_sessions(db, str(n)) for n in hidden} == sessions
    marked = scalar(
        db,
        "SELECT COUNT(*) FROM kairos_session WHERE formation_rejected_run_id = :r",
        r=entry.run_id,
    )
    assert marked == sum(sessions.values())
    assert entry.formations_read == first.formations_read
    assert entry.formations_quarantined == first.formations_quarantined + 2
    assert entry.counts["formations_misplaced"] == 2
    assert entry.counts["elements_quarantined"] == 1


def test_an_unknown_element_alone_is_quarantined(db: str, tmp_path: Path) -> None:
    base = generated(tmp_path)
    load_snapshot(base, source="occ", config=CONFIG, db_url=db)

    def note(root: etree._Element, ns: str) -> None:
        formations = _formations(root, ns)
        comment = etree.Element(f"{{{ns}}}commentaire")
        comment.text = "export du soir"
        formations[3].addnext(comment)
        extras = etree.SubElement(root.find(f"{{{ns}}}offres"), f"{{{ns}}}extras")  # type: ignore[arg-type]
        etree.SubElement(extras, f"{{{ns}}}extra", info="lot").text = "LHEO's own extension"

    entry = load_snapshot(
        edited(base, tmp_path / "note.xml", note), source="occ", config=CONFIG, db_url=db
    )
    rows = query(db, "SELECT record_kind, path FROM quarantine WHERE run_id = :r", r=entry.run_id)
    assert [(r.record_kind, r.path) for r in rows if r.record_kind == "element"] == [
        ("element", "/commentaire")
    ]  # `extras` is LHEO's own: not quarantined
    assert entry.status == "noop" and entry.sessions_closed == 0


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda root, ns: root.find(f"{{{ns}}}offres").__setattr__("tag", "{urn:other}offres"),
            "foreign namespace: <offres> in namespace 'urn:other' at line 3",
        ),
        (
            lambda root, ns: _formations(root, ns)[2].addprevious(
                etree.Element("{urn:example:lot}lot")
            ),
            "foreign namespace: <lot> in namespace 'urn:example:lot'",
        ),
        (
            lambda root, ns: _formations(root, ns)[2].__setattr__("tag", "{urn:other}formation"),
            "foreign namespace: <formation> in namespace 'urn:other'",
        ),
    ],
    ids=["offres", "element-under-offres", "formation"],
)
def test_foreign_namespaces_below_the_root_refuse_the_document(
    db: str, tmp_path: Path, edit: Any, message: str
) -> None:
    base = generated(tmp_path)
    load_snapshot(base, source="occ", config=CONFIG, db_url=db)
    before = query(db, "SELECT id, closed_at FROM kairos_session ORDER BY id")
    foreign = edited(base, tmp_path / "foreign.xml", edit)
    with pytest.raises(DocumentError, match=message.replace("(", r"\(")):
        load_snapshot(foreign, source="occ", config=CONFIG, db_url=db)
    assert query(db, "SELECT id, closed_at FROM kairos_session ORDER BY id") == before
    assert last_ledger(db).status == "failed"


def test_reader_names_the_line_of_a_foreign_offres(tmp_path: Path) -> None:
    path = tmp_path / "other.xml"
    path.write_text(
        '<?xml version="1.0"?>\n<lheo xmlns="http://lheo.gouv.fr/2.3">\n'
        '  <offres xmlns="urn:other"><formation/></offres>\n</lheo>\n',
        encoding="utf-8",
    )
    with pytest.raises(DocumentError) as caught, OfferReader(path) as reader:
        list(reader)
    assert "<offres> in namespace 'urn:other' at line 3" in str(caught.value)


def test_misplaced_records_go_to_one_shard_in_document_order(tmp_path: Path) -> None:
    """The parallel load reads with shards: each quarantined item is yielded once."""
    base = generated(tmp_path, formations=80)
    trapped = edited(base, tmp_path / "lot.xml", _in_a_lot(3))
    with OfferReader(trapped) as reader:
        alone = [(r.kind, r.numero, r.line) for r in reader if isinstance(r, QuarantinedRecord)]
    sharded: list[tuple[Any, ...]] = []
    for index in range(3):
        with OfferReader(trapped, shard=(index, 3, 4)) as reader:
            sharded += [
                (r.kind, r.numero, r.line) for r in reader if isinstance(r, QuarantinedRecord)
            ]
    assert sorted(sharded, key=lambda r: r[2]) == alone
    assert [k for k, _, _ in alone[:4]] == ["element", "formation", "formation", "formation"]


# ------------------------------------------------------------------- duplicate numeros


def _duplicate_first_formation_changed(root: etree._Element, ns: str) -> None:
    """The first formation twice: an earlier copy with a changed title and one session less,
    then the formation as it was (the later copy, unchanged since the base)."""
    formations = _formations(root, ns)
    original = formations[0]
    earlier = copy.deepcopy(original)
    title = earlier.find(f"{{{ns}}}intitule-formation")
    assert title is not None
    title.text = (title.text or "") + " (ancienne copie)"
    sessions = list(earlier.iter(f"{{{ns}}}session"))
    if len(sessions) > 1:
        sessions[-1].getparent().remove(sessions[-1])  # type: ignore[union-attr]
    original.addprevious(earlier)


def test_duplicate_numero_last_copy_wins_on_every_path(
    db_url: str, second_db: str, tmp_path: Path
) -> None:
    from test_load_parallel import _fresh

    base = generated(tmp_path)
    doubled = edited(base, tmp_path / "doubled.xml", _duplicate_first_formation_changed)
    incremental, fresh = _fresh(db_url), second_db
    load_snapshot(base, source="occ", config=CONFIG, db_url=incremental)
    entry = load_snapshot(doubled, source="occ", config=CONFIG, db_url=incremental)
    # The later copy is byte for byte the base's: skipped as unchanged, and still it wins.
    assert entry.counts["formations_unchanged"] > 0
    reference = load_snapshot(doubled, source="occ", config=CONFIG, db_url=fresh, fast_path=False)
    assert entry.counts["duplicate_formations"] == reference.counts["duplicate_formations"] == 1
    for name in ("kairos_session", "formation", "action", "recruitment_slot"):
        got = [
            r for r in _without_ids(incremental, NATURAL[name]) if "ancienne copie" not in str(r)
        ]
        assert _without_ids(incremental, NATURAL[name]) == got, f"{name}: earlier copy loaded"
    # The open rows are those of a fresh read of the same file (the fresh database has no
    # history of the base, so only the current rows compare).
    current = (
        "SELECT carif_session_numero, dispensateur_siret, intitule, content_hash"
        " FROM kairos_session WHERE closed_at IS NULL ORDER BY 1, 2"
    )
    assert query(incremental, current) == query(fresh, current)
    slots = (
        "SELECT k.carif_session_numero, k.dispensateur_siret, r.slot_key, r.content_hash"
        " FROM recruitment_slot r JOIN kairos_session k ON k.id = r.kairos_session_id"
        " WHERE r.closed_at IS NULL ORDER BY 1, 2, 3"
    )
    assert query(incremental, slots) == query(fresh, slots)


# ------------------------------------------------------------------- a formation turns invalid


def _siret_with_a_leading_zero(numeros: list[str]) -> Any:
    def edit(root: etree._Element, ns: str) -> None:
        for formation in _formations(root, ns):
            if formation.get("numero") in numeros:
                siret = formation.find(
                    f"{{{ns}}}organisme-formation-responsable/{{{ns}}}SIRET-organisme-formation"
                    f"/{{{ns}}}SIRET"
                )
                assert siret is not None
                siret.text = "0" + (siret.text or "")

    return edit


def test_a_formation_that_turns_invalid_keeps_its_sessions(db: str, tmp_path: Path) -> None:
    base = generated(tmp_path)
    load_snapshot(base, source="occ", config=CONFIG, db_url=db)
    tree = etree.parse(str(base))
    ns = tree.getroot().nsmap[None]
    numeros = [str(f.get("numero")) for f in _formations(tree.getroot(), ns)]
    # More than max_close_share (20 %) of the sessions' formations turn invalid tonight.
    broken = numeros[: len(numeros) // 2]
    before = {n: _open_sessions(db, n) for n in broken}
    versions = scalar(db, "SELECT COUNT(*) FROM kairos_session_version")

    tonight = edited(base, tmp_path / "tonight.xml", _siret_with_a_leading_zero(broken))
    entry = load_snapshot(tonight, source="occ", config=CONFIG, db_url=db)  # not refused
    assert entry.status == "succeeded" and entry.sessions_closed == 0
    assert {n: _open_sessions(db, n) for n in broken} == before
    kept = sum(before.values())
    assert entry.counts["sessions_of_rejected_formations"] == kept
    assert entry.counts["sessions_marked_rejected"] == kept
    assert entry.counts["rejected_formations_keeping_sessions"] == len(
        [n for n in broken if before[n]]
    )
    rows = query(
        db,
        "SELECT formation_rejected_run_id, formation_rejected_on, formation_rejected_reason"
        " FROM kairos_session WHERE carif_formation_numero = :n",
        n=broken[0],
    )
    assert rows and all(r[0] == entry.run_id for r in rows)
    assert all("SIRET" in r[2] and "length" in r[2] for r in rows)
    # The mark is a versioned write.
    assert scalar(db, "SELECT COUNT(*) FROM kairos_session_version") == versions + kept

    # The checks say so, with the reason, for the OF responsable.
    as_of = dt.date(2026, 11, 1)
    run = run_checks(db, as_of)
    flags = [f for f in run.flags if f.rule_id == "formation_quarantined"]
    not_ended = query(
        db,
        "SELECT DISTINCT carif_formation_numero FROM kairos_session WHERE closed_at IS NULL"
        " AND formation_rejected_run_id IS NOT NULL AND (fin IS NULL OR fin >= :d)",
        d=as_of,
    )
    assert {f.carif_formation_numero for f in flags} == {r[0] for r in not_ended}
    assert len(not_ended) > len(broken) // 2
    assert all(f.severity == "error" for f in flags)
    assert "SIRET" in flags[0].message and "Refusée depuis le" in flags[0].message

    # The same rejection again: nothing is written again.
    again = load_snapshot(tonight, source="occ", config=CONFIG, db_url=db, fast_path=False)
    assert again.counts["sessions_marked_rejected"] == 0 and again.status == "noop"

    # Corrected upstream: the formations are read again and the mark goes.
    fixed = load_snapshot(base, source="occ", config=CONFIG, db_url=db)
    assert fixed.counts["sessions_no_longer_rejected"] == kept
    assert (
        scalar(
            db, "SELECT COUNT(*) FROM kairos_session WHERE formation_rejected_run_id IS NOT NULL"
        )
        == 0
    )
