"""The parallel load (pipelines/load_parallel.py) and the reload fast path.

The parallel path must give exactly the database the sequential one gives (same rows, same
quarantine, same ledger counts), roll everything back on a DocumentError in the middle, and
leave no worker process behind. The fast path records a noop without reading the file only
when nothing that decides the rows changed.
"""

from __future__ import annotations

import multiprocessing
import pickle
import re
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from core.config import GuichetUniqueMatcher, SourceConfig, SourcesConfig
from core.copy_format import copy_text
from core.db import get_engine, migrate
from pipelines import load_parallel
from pipelines.load import load_snapshot
from samples.generator import write_offers
from transforms.reader import DocumentError, OfferReader

CONFIG = SourcesConfig(
    {
        "occ": SourceConfig("occ", lheo_version="2.3"),
        "nor": SourceConfig(
            "nor",
            lheo_version="2.2",
            guichet_unique=(
                GuichetUniqueMatcher("extra", "#Avenir", "programme"),
                GuichetUniqueMatcher("action_numero_prefix", "AVN-"),
            ),
        ),
    }
)
SOURCE_OF = {"2.3": "occ", "2.2": "nor"}
# Columns that differ by design between two loads into two databases: ids and run ids are
# the same here (fresh databases, same order), timestamps are not.
CONTENT = {
    "kairos_session": "SELECT * FROM kairos_session ORDER BY id",
    "recruitment_slot": "SELECT * FROM recruitment_slot ORDER BY id",
    "formation": "SELECT * FROM formation ORDER BY id",
    "action": "SELECT * FROM action ORDER BY id",
    "organisation": "SELECT * FROM organisation ORDER BY siret",
    "quarantine": "SELECT run_id, source, record_kind, record_key, line, path, reasons"
    " FROM quarantine ORDER BY id",
}
LEDGER = (
    "SELECT status, formations_read, formations_valid, formations_quarantined,"
    " sessions_inserted, sessions_updated, sessions_unchanged, sessions_closed,"
    " slots_inserted, slots_updated, slots_closed FROM run_ledger ORDER BY id"
)


def query(url: str, sql: str) -> list[Any]:
    engine = get_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql)))
    finally:
        engine.dispose()


def scalar(url: str, sql: str) -> Any:
    return query(url, sql)[0][0]


def state(url: str) -> list[Any]:
    """Everything a failed load must leave untouched (as tests/test_load.py)."""
    tables = (
        "kairos_session",
        "recruitment_slot",
        "kairos_session_version",
        "formation",
        "action",
        "quarantine",
    )
    return [(t, query(url, f"SELECT * FROM {t} ORDER BY id")) for t in tables]


def _fresh(url: str) -> str:
    engine = get_engine(url)
    migrate(engine)
    engine.dispose()
    return url


def _content(url: str) -> dict[str, list[Any]]:
    return {name: query(url, sql) for name, sql in CONTENT.items()} | {"ledger": query(url, LEDGER)}


_STAMP = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d")


def _no_timestamps(rows: list[Any]) -> list[tuple[Any, ...]]:
    """Rows without their timestamps (closed_at etc. are the load's clock)."""
    return [
        tuple(
            v
            for v in row
            if not isinstance(v, datetime) and not (isinstance(v, str) and _STAMP.match(v))
        )
        for row in rows
    ]


def _workers_alive() -> list[psutil.Process]:
    return [
        child
        for child in psutil.Process().children(recursive=True)
        if child.is_running()
        and child.status() != psutil.STATUS_ZOMBIE
        # multiprocessing's own helper, started once per interpreter by `spawn`
        and "resource_tracker" not in " ".join(child.cmdline())
    ]


@pytest.mark.parametrize("version", ["2.3", "2.2"])
def test_parallel_load_gives_the_same_database(
    db_url: str, second_db: str, tmp_path: Path, version: str
) -> None:
    sequential_db = _fresh(db_url)
    first = tmp_path / "first.xml"
    write_offers(first, formations=150, seed=11, lheo_version=version, invalid_rate=0.05)
    # The next snapshot: fewer formations (closings), different seed (updates).
    second = tmp_path / "second.xml"
    write_offers(second, formations=140, seed=11, lheo_version=version, invalid_rate=0.05)
    source = SOURCE_OF[version]
    for url, workers in ((sequential_db, 0), (second_db, 2)):
        for path in (first, second):
            load_snapshot(
                path,
                source=source,
                config=CONFIG,
                db_url=url,
                workers=workers,
                fast_path=False,
                batch_size=500,
            )
    expected, got = _content(sequential_db), _content(second_db)
    assert expected["quarantine"], "the file has quarantined records"
    assert len(expected["kairos_session"]) > 300
    for name in expected:
        assert _no_timestamps(got[name]) == _no_timestamps(expected[name]), name
    assert not _workers_alive()


def test_parallel_small_blocks_and_more_workers(db_url: str, tmp_path: Path) -> None:
    """Many blocks per worker, three workers: order is still the document's."""
    db = _fresh(db_url)
    offers = tmp_path / "offers.xml"
    write_offers(offers, formations=60, seed=3, lheo_version="2.3", invalid_rate=0.1)
    blocks: list[int] = []
    counts = load_parallel.run_parallel(
        offers,
        "occ",
        CONFIG.source("occ"),
        workers=3,
        copy_format=False,
        write=lambda block: blocks.append(block.number),
        block_formations=4,
    )
    assert blocks == list(range(15))
    assert counts.formations == 60 and counts.valid + counts.quarantined == 60
    with OfferReader(offers, source="occ") as reader:
        sequential = list(reader)
    assert counts.quarantined == sum(1 for r in sequential if not hasattr(r, "actions"))
    entry = load_snapshot(offers, source="occ", config=CONFIG, db_url=db, workers=3)
    assert entry.formations_read == 60
    assert not _workers_alive()


def test_document_error_mid_file_rolls_back_and_stops_workers(db_url: str, tmp_path: Path) -> None:
    db = _fresh(db_url)
    offers = tmp_path / "offers.xml"
    write_offers(offers, formations=40, seed=7, lheo_version="2.3")
    load_snapshot(offers, source="occ", config=CONFIG, db_url=db, workers=0)
    before = state(db)
    bigger = tmp_path / "bigger.xml"
    write_offers(bigger, formations=300, seed=7, lheo_version="2.3", invalid_rate=0.05)
    truncated = tmp_path / "truncated.xml"
    data = bigger.read_bytes()
    truncated.write_bytes(data[: int(len(data) * 0.8)])
    with pytest.raises(DocumentError, match="truncated"):
        load_snapshot(truncated, source="occ", config=CONFIG, db_url=db, workers=2, batch_size=1)
    assert state(db) == before
    status, error = query(db, "SELECT status, error FROM run_ledger ORDER BY id DESC")[0]
    assert status == "failed" and "DocumentError" in error
    assert not _workers_alive()


def test_a_failure_while_writing_stops_the_workers(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = _fresh(db_url)
    offers = tmp_path / "offers.xml"
    write_offers(offers, formations=200, seed=5, lheo_version="2.3")

    def broken(self: Any, block: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr("pipelines.load.Stager.add_block", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        load_snapshot(offers, source="occ", config=CONFIG, db_url=db, workers=2)
    assert scalar(db, "SELECT COUNT(*) FROM kairos_session") == 0
    assert not _workers_alive()


def test_a_dead_worker_fails_the_load(tmp_path: Path) -> None:
    offers = tmp_path / "offers.xml"
    write_offers(offers, formations=400, seed=5, lheo_version="2.3")

    def kill_one(block: load_parallel.Block) -> None:
        if block.number == 0:
            for child in psutil.Process().children():
                command = " ".join(child.cmdline())
                if "spawn_main" in command and "resource_tracker" not in command:
                    child.kill()
                    break

    with pytest.raises(RuntimeError, match=r"died|arrived"):
        load_parallel.run_parallel(
            offers,
            "occ",
            CONFIG.source("occ"),
            workers=2,
            copy_format=True,
            write=kill_one,
            block_formations=8,
        )
    assert not _workers_alive()


def test_document_error_survives_pickling() -> None:
    error = pickle.loads(pickle.dumps(DocumentError("/x/offers.xml", "file is empty")))  # noqa: S301
    assert isinstance(error, DocumentError)
    assert (error.file, error.reason) == ("/x/offers.xml", "file is empty")
    assert str(error) == "/x/offers.xml: file is empty"


def test_spawn_context_is_available() -> None:
    assert "spawn" in multiprocessing.get_all_start_methods()


# ----------------------------------------------------------------------------- fast path


def test_reload_fast_path_writes_nothing_and_keeps_the_quarantine(
    db_url: str, tmp_path: Path
) -> None:
    db = _fresh(db_url)
    offers = tmp_path / "offers.xml"
    write_offers(offers, formations=60, seed=7, lheo_version="2.3", invalid_rate=0.05)
    first = load_snapshot(offers, source="occ", config=CONFIG, db_url=db)
    before = {name: query(db, sql) for name, sql in CONTENT.items() if name != "quarantine"}
    renamed = tmp_path / "renamed.xml"
    shutil.copy(offers, renamed)
    second = load_snapshot(renamed, source="occ", config=CONFIG, db_url=db)
    assert second.status == "noop"
    assert second.counts.get("fast_path_same_input_as_run") == first.run_id
    assert (second.formations_read, second.formations_quarantined) == (
        first.formations_read,
        first.formations_quarantined,
    )
    assert second.sessions_unchanged == first.sessions_inserted
    after = {name: query(db, sql) for name, sql in CONTENT.items() if name != "quarantine"}
    assert after == before
    # The run's quarantine is the same records, under the new run and file name.
    rows = query(db, "SELECT run_id, file, record_key, line, reasons FROM quarantine ORDER BY id")
    old = [r[2:] for r in rows if r[0] == first.run_id]
    new = [r[2:] for r in rows if r[0] == second.run_id]
    assert old and new == old
    assert {r[1] for r in rows if r[0] == second.run_id} == {str(renamed)}
    # Without the fast path, the same file reads to the same noop.
    third = load_snapshot(renamed, source="occ", config=CONFIG, db_url=db, fast_path=False)
    assert third.status == "noop" and "fast_path_same_input_as_run" not in third.counts
    assert third.sessions_unchanged == second.sessions_unchanged
    assert third.formations_quarantined == second.formations_quarantined


def test_fast_path_not_taken_when_config_or_previous_run_differs(
    db_url: str, tmp_path: Path
) -> None:
    db = _fresh(db_url)
    offers = tmp_path / "offers.xml"
    write_offers(offers, formations=30, seed=7, lheo_version="2.2")
    other = tmp_path / "other.xml"
    write_offers(other, formations=30, seed=8, lheo_version="2.2")
    loose = SourcesConfig(
        {"nor": SourceConfig("nor", CONFIG.source("nor").lheo_version, max_close_share=1.0)}
    )
    load_snapshot(offers, source="nor", config=loose, db_url=db)
    changed = SourcesConfig({"nor": SourceConfig("nor", "2.2", max_close_share=0.99)})
    entry = load_snapshot(offers, source="nor", config=changed, db_url=db)
    assert "fast_path_same_input_as_run" not in entry.counts
    # A different snapshot in between: the same file again is a real load, not a noop.
    load_snapshot(other, source="nor", config=loose, db_url=db)
    back = load_snapshot(offers, source="nor", config=loose, db_url=db)
    assert back.status == "succeeded" and "fast_path_same_input_as_run" not in back.counts
    # A partial snapshot of the same file is not the same input either.
    partial = load_snapshot(offers, source="nor", config=loose, db_url=db, full_snapshot=False)
    assert "fast_path_same_input_as_run" not in partial.counts


# Text as the reader can hand it over: any character PostgreSQL stores in a text column (not
# NUL, not lone surrogates), with COPY's special characters and an end-of-data marker often.
_COPY_HOSTILE = st.lists(
    st.sampled_from(["\\", "\t", "\n", "\r", "\\.", "\\N", "N", "é", " "])
    | st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=30,
).map("".join)


@pytest.mark.postgres
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.tuples(_COPY_HOSTILE, st.none() | _COPY_HOSTILE, st.integers(-(2**63), 2**63 - 1)),
        max_size=8,
    )
)
def test_copy_text_round_trips_through_postgresql(
    postgres_url: str, rows: list[tuple[str, str | None, int]]
) -> None:
    """What the staging COPY writes is what PostgreSQL reads back, value for value."""
    engine = get_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "CREATE TEMPORARY TABLE copied (n INTEGER, a TEXT, b TEXT, c BIGINT)"
            )
            numbered = [(n, *row) for n, row in enumerate(rows)]
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            cursor.copy_expert("COPY copied (n, a, b, c) FROM STDIN", copy_text(numbered))
            back = [tuple(r) for r in conn.exec_driver_sql("SELECT * FROM copied ORDER BY n")]
    finally:
        engine.dispose()
    assert back == numbered
