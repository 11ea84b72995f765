"""Skipping unchanged formations (transforms/formation_digest.py).

The loader may skip a formation only where reading it again would change nothing: a load
that skips must leave exactly the database (rows, versions, closings, quarantine, ledger
counts) that a load reading everything leaves. Both dialects; the skipping side uses the
parallel workers, the reference side the sequential path.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import text
from test_load_parallel import (
    _STAMP,
    CONFIG,
    CONTENT,
    LEDGER,
    SOURCE_OF,
    _fresh,
    _no_timestamps,
    query,
    scalar,
)

from core.config import SourceConfig, SourcesConfig
from core.db import get_engine
from pipelines.load import load_snapshot
from samples.generator import write_offers
from transforms.formation_digest import DigestSet, UnchangedFormation, formation_digest
from transforms.reader import OfferReader
from transforms.records import Formation

# Every table the load writes, by natural key. Surrogate ids are left out: PostgreSQL's
# `INSERT … ON CONFLICT DO NOTHING` draws an id for every row it tries, so a load that
# stages fewer rows gives new rows other ids; what they identify must be the same.
_SESSION_KEY = "k.source, k.carif_session_numero, k.dispensateur_siret"
NATURAL = {
    "kairos_session": f"SELECT * FROM kairos_session k ORDER BY {_SESSION_KEY}",
    "recruitment_slot": f"SELECT {_SESSION_KEY}, r.* FROM recruitment_slot r"
    f" JOIN kairos_session k ON k.id = r.kairos_session_id ORDER BY {_SESSION_KEY}, r.slot_key",
    "session versions": f"SELECT {_SESSION_KEY}, v.* FROM kairos_session_version v"
    f" JOIN kairos_session k ON k.id = v.kairos_session_id ORDER BY {_SESSION_KEY}, v.version_no",
    "slot versions": f"SELECT {_SESSION_KEY}, r.slot_key, v.* FROM recruitment_slot_version v"
    " JOIN recruitment_slot r ON r.id = v.recruitment_slot_id"
    f" JOIN kairos_session k ON k.id = r.kairos_session_id"
    f" ORDER BY {_SESSION_KEY}, r.slot_key, v.version_no",
    "formation": "SELECT * FROM formation ORDER BY carif_formation_numero",
    "action": "SELECT * FROM action ORDER BY carif_action_numero",
    "organisation": "SELECT * FROM organisation ORDER BY siret",
    "quarantine": CONTENT["quarantine"],
    "formation_digest": "SELECT * FROM formation_digest ORDER BY carif_formation_numero, digest",
}
SURROGATE = {"id", "kairos_session_id", "recruitment_slot_id"}


def _without_ids(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = get_engine(url)
    try:
        with engine.connect() as conn:
            rows = [dict(r) for r in conn.execute(text(sql)).mappings()]
    finally:
        engine.dispose()
    return _no_timestamps(
        [tuple(_json_without_ids(v) for k, v in r.items() if k not in SURROGATE) for r in rows]
    )


def _json_without_ids(value: object) -> object:
    """A version's JSON snapshot of its row, without surrogate ids and timestamps."""
    if not (isinstance(value, str) and value.startswith("{")):
        return value
    row = json.loads(value)
    return sorted(
        (k, v)
        for k, v in row.items()
        if k not in SURROGATE and not (isinstance(v, str) and _STAMP.match(v))
    )


def _formations(root: etree._Element) -> list[etree._Element]:
    return [e for e in root.iter() if isinstance(e.tag, str) and e.tag.endswith("}formation")]


def _snapshots(tmp_path: Path, version: str) -> tuple[Path, Path, dict[str, int]]:
    """A base snapshot and a next one with formations changed, removed and added."""
    generated = tmp_path / "generated.xml"
    write_offers(generated, formations=40, seed=11, lheo_version=version, invalid_rate=0.1)
    tree = etree.parse(str(generated))
    base = tmp_path / "base.xml"
    tree.write(str(base), xml_declaration=True, encoding="utf-8")  # the bytes both will share
    formations = _formations(tree.getroot())
    changed = 0
    for element in formations[3::7]:  # a recruitment state or a title changes
        state = next((e for e in element.iter() if str(e.tag).endswith("}etat-recrutement")), None)
        if state is not None:
            state.text = "3" if state.text != "3" else "1"
        else:
            title = next(e for e in element.iter() if str(e.tag).endswith("}intitule-formation"))
            title.text = (title.text or "") + " (nouvelle version)"
        changed += 1
    removed = formations[5]
    removed.getparent().remove(removed)  # type: ignore[union-attr]
    added = etree.fromstring(etree.tostring(formations[1]))
    added.set("numero", "NEW-FORMATION-1")
    formations[1].getparent().append(added)  # type: ignore[union-attr]
    following = tmp_path / "next.xml"
    tree.write(str(following), xml_declaration=True, encoding="utf-8")
    return base, following, {"changed": changed}


@pytest.mark.parametrize("version", ["2.3", "2.2"])
def test_skipping_unchanged_formations_gives_the_database_a_full_read_gives(
    db_url: str, second_db: str, tmp_path: Path, version: str
) -> None:
    base, following, _ = _snapshots(tmp_path, version)
    source = SOURCE_OF[version]
    skipping, reading = _fresh(db_url), second_db
    for url, fast in ((skipping, True), (reading, False)):
        for snapshot in (base, following):
            load_snapshot(
                snapshot,
                source=source,
                config=CONFIG,
                db_url=url,
                workers=2 if fast else 0,
                fast_path=fast,
            )
    for name, sql in NATURAL.items():
        got, expected = _without_ids(skipping, sql), _without_ids(reading, sql)
        assert got and got == expected, name
    assert query(skipping, LEDGER) == query(reading, LEDGER)

    counts = query(skipping, "SELECT counts_json FROM run_ledger ORDER BY id")
    first, second = (json.loads(row[0]) for row in counts)
    assert first["formations_unchanged"] == 0  # nothing known yet
    assert second["formations_known"] == first["formation_digests_recorded"] > 0
    # Every valid formation of the base that the next snapshot kept byte for byte is
    # skipped; the changed, the new and the quarantined ones are read.
    assert 0 < second["formations_unchanged"] < second["formations_known"]
    assert second["sessions_of_unchanged_formations"] > 0
    # The reading side records the digests too (its next load could skip).
    assert scalar(reading, "SELECT COUNT(*) FROM formation_digest") == scalar(
        skipping, "SELECT COUNT(*) FROM formation_digest"
    )


def test_only_valid_formations_are_remembered_and_a_config_change_forgets(
    db_url: str, tmp_path: Path
) -> None:
    url = _fresh(db_url)
    file = tmp_path / "offers.xml"
    write_offers(file, formations=30, seed=5, lheo_version="2.3", invalid_rate=0.2)
    first = load_snapshot(file, source="occ", config=CONFIG, db_url=url, workers=0)
    assert first.formations_quarantined and first.formations_valid
    recorded = scalar(url, "SELECT COUNT(*) FROM formation_digest WHERE source = 'occ'")
    numbered = scalar(url, "SELECT COUNT(DISTINCT carif_formation_numero) FROM formation")
    assert recorded == first.formations_valid == numbered

    # The same formations in a file with other bytes outside them: the whole-file fast path
    # cannot apply, the per-formation one does; quarantined formations are read again.
    copy = tmp_path / "offers-copy.xml"
    copy.write_bytes(file.read_bytes() + b"\n<!-- re-exported -->\n")
    again = load_snapshot(copy, source="occ", config=CONFIG, db_url=url, workers=0)
    assert again.counts["formations_unchanged"] == first.formations_valid
    assert again.formations_quarantined == first.formations_quarantined
    assert again.status == "noop" and again.sessions_closed == 0
    assert again.sessions_unchanged == first.sessions_inserted

    # Another configuration for the source: its rows may map differently, nothing is skipped.
    other = SourcesConfig({"occ": SourceConfig("occ", lheo_version="2.3", max_close_share=0.5)})
    copy.write_bytes(file.read_bytes() + b"\n<!-- again -->\n")
    changed = load_snapshot(copy, source="occ", config=other, db_url=url, workers=0)
    assert changed.counts["formations_known"] == 0
    assert changed.counts["formations_unchanged"] == 0


def test_reader_yields_unchanged_formations_and_digests_are_stable(tmp_path: Path) -> None:
    file = tmp_path / "offers.xml"
    write_offers(file, formations=12, seed=2, lheo_version="2.2")
    with OfferReader(file, digests=DigestSet()) as reader:
        first = [(r.numero, reader.last_digest) for r in reader if isinstance(r, Formation)]
    assert len({d for _, d in first}) == len(first)  # one digest per formation
    known = DigestSet(d for _, d in first[::2] if d is not None)
    known = pickle.loads(pickle.dumps(known))  # noqa: S301 - as the workers receive it
    with OfferReader(file, digests=known) as reader:
        records = list(reader)
        counts = dict(reader.counts)
    skipped = [r.numero for r in records if isinstance(r, UnchangedFormation)]
    assert skipped == [n for n, _ in first[::2]]
    assert counts["unchanged"] == len(skipped) and counts["valid"] == len(first)

    # The digest follows the content, not the position or the line.
    tree = etree.parse(str(file))
    element = _formations(tree.getroot())[0]
    before = formation_digest(element)
    text = next(e for e in element.iter() if re.search(r"\}intitule-formation$", str(e.tag)))
    text.text = (text.text or "") + "!"
    assert formation_digest(element) != before


def test_a_new_export_stamp_leaves_a_formation_unchanged(db_url: str, tmp_path: Path) -> None:
    """The 2.3 flux stamps every element with `horodatage-export` at each export: a
    formation re-exported with a new stamp and nothing else is skipped as unchanged, one
    whose `horodatage-modification` moved is read again."""
    url = _fresh(db_url)
    fixture = Path(__file__).parent / "fixtures" / "lheo-2.3-horodatage.xml"
    text = fixture.read_text(encoding="utf-8")
    first = tmp_path / "export-1.xml"
    first.write_text(text, encoding="utf-8")
    loaded = load_snapshot(first, source="occ", config=CONFIG, db_url=url, workers=0)
    assert loaded.formations_valid == 1 and loaded.sessions_inserted > 0

    second = tmp_path / "export-2.xml"
    second.write_text(text.replace("2026-12-02T23:00:00Z", "2026-12-03T23:00:00Z"), "utf-8")
    again = load_snapshot(second, source="occ", config=CONFIG, db_url=url, workers=0)
    assert again.counts["formations_unchanged"] == 1
    assert again.status == "noop"

    third = tmp_path / "export-3.xml"
    third.write_text(text.replace("17:03:05.250", "18:03:05.250"), "utf-8")
    modified = load_snapshot(third, source="occ", config=CONFIG, db_url=url, workers=0)
    assert modified.counts["formations_unchanged"] == 0
