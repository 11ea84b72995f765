"""Snapshot loads (pipelines/load.py) on SQLite and on a real PostgreSQL (`db_url`).

Files come from the generator and are edited with lxml to make the next snapshot: one
session changed, one formation gone, a truncated copy… Every assertion reads the database.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import text

from core.config import GuichetUniqueMatcher, SourceConfig, SourcesConfig
from core.db import get_engine, migrate
from core.history import changes_in_last_run, sessions_as_of
from pipelines import load as load_module
from pipelines.load import LockTimeout, SnapshotRefused, load_snapshot, source_lock
from samples.generator import write_offers
from transforms.reader import DocumentError

NS = {"2.2": "http://www.lheo.org/2.2", "2.3": "http://lheo.gouv.fr/2.3"}
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
        "loose": SourceConfig("loose", max_close_share=0.95),
    }
)


def generated(tmp_path: Path, version: str = "2.3", formations: int = 40, **kw: Any) -> Path:
    path = tmp_path / f"offers-{version}-{formations}.xml"
    write_offers(path, formations=formations, seed=7, lheo_version=version, **kw)
    return path


def edited(source: Path, target: Path, edit: Callable[[etree._Element, str], None]) -> Path:
    tree = etree.parse(str(source))
    edit(tree.getroot(), tree.getroot().nsmap[None])
    tree.write(str(target), xml_declaration=True, encoding="utf-8")
    return target


def query(url: str, sql: str, **params: Any) -> list[Any]:
    engine = get_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(text(sql), params))
    finally:
        engine.dispose()


def scalar(url: str, sql: str, **params: Any) -> Any:
    return query(url, sql, **params)[0][0]


def state(url: str) -> list[Any]:
    """Everything a failed load must leave untouched."""
    rows: list[Any] = []
    for table in (
        "kairos_session",
        "recruitment_slot",
        "kairos_session_version",
        "recruitment_slot_version",
        "formation",
        "action",
        "quarantine",
    ):
        rows.append((table, query(url, f"SELECT * FROM {table} ORDER BY id")))
    return rows


def last_ledger(url: str) -> Any:
    return query(url, "SELECT * FROM run_ledger ORDER BY id DESC")[0]


# ----------------------------------------------------------------------------- first load, noop


def test_load_then_reload_is_a_noop(db: str, tmp_path: Path) -> None:
    offers = generated(tmp_path, invalid_rate=0.05)
    first = load_snapshot(offers, source="occ", config=CONFIG, db_url=db)
    assert first.status == "succeeded"
    assert first.formations_read == 40 and first.formations_quarantined == 2
    assert first.formations_valid == 38
    sessions = scalar(db, "SELECT COUNT(*) FROM kairos_session")
    assert first.sessions_inserted == sessions > 38
    assert first.slots_inserted == scalar(db, "SELECT COUNT(*) FROM recruitment_slot") > 0
    assert scalar(db, "SELECT COUNT(*) FROM kairos_session_version") == sessions
    assert scalar(db, "SELECT COUNT(*) FROM quarantine") == 2
    reasons = json.loads(scalar(db, "SELECT reasons FROM quarantine ORDER BY id LIMIT 1"))
    assert reasons and {"line", "path", "message"} <= set(reasons[0])
    xmin = "SELECT id, xmin::text FROM {} ORDER BY id"
    before = {}
    if db.startswith("postgresql"):
        before = {t: query(db, xmin.format(t)) for t in ("kairos_session", "recruitment_slot")}

    second = load_snapshot(offers, source="occ", config=CONFIG, db_url=db)
    assert second.status == "noop"
    assert (second.sessions_inserted, second.sessions_updated, second.sessions_closed) == (0, 0, 0)
    assert second.sessions_unchanged == sessions
    assert (second.slots_inserted, second.slots_updated, second.slots_closed) == (0, 0, 0)
    assert scalar(db, "SELECT COUNT(*) FROM kairos_session_version") == sessions
    assert (
        scalar(
            db, "SELECT COUNT(*) FROM kairos_session WHERE last_seen_run_id <> :r", r=first.run_id
        )
        == 0
    )
    if db.startswith("postgresql"):  # zero rows rewritten: no new tuple versions at all
        for table, rows in before.items():
            assert query(db, xmin.format(table)) == rows
    ledger = query(
        db, "SELECT status, sessions_unchanged, snapshot_sha256 FROM run_ledger ORDER BY id"
    )
    assert [r[0] for r in ledger] == ["succeeded", "noop"]
    assert ledger[0][2] == ledger[1][2] == second.snapshot_sha256


def test_22_guichet_unique_and_information_slots(db: str, tmp_path: Path) -> None:
    offers = generated(tmp_path, version="2.2", formations=60)
    load_snapshot(offers, source="nor", config=CONFIG, db_url=db)
    avenir = query(
        db,
        "SELECT DISTINCT split_reason, dispensateur_siret = mandataire_siret FROM kairos_session "
        "WHERE carif_action_numero LIKE 'AVN-%'",
    )
    assert avenir == [("guichet_unique", True)]
    other = {
        r[0]
        for r in query(
            db, "SELECT split_reason FROM kairos_session WHERE carif_action_numero NOT LIKE 'AVN-%'"
        )
    }
    assert "guichet_unique" not in other
    modalities = {r[0] for r in query(db, "SELECT DISTINCT modality FROM recruitment_slot")}
    assert modalities == {"ico"}  # 2.2: date-information only
    assert scalar(db, "SELECT COUNT(*) FROM recruitment_slot WHERE slot_key NOT LIKE 'info:%'") == 0


def test_23_recruitment_slots_and_splits(db: str, tmp_path: Path) -> None:
    load_snapshot(generated(tmp_path, formations=80), source="occ", config=CONFIG, db_url=db)
    rows = query(db, "SELECT modality, modality_code FROM recruitment_slot")
    by_modality = {m: {c for mm, c in rows if mm == m} for m, _ in rows}
    assert by_modality["ico"] == {9} and by_modality["rdvi"] == {8}
    assert by_modality["candidature"] == {7}
    reasons = {r[0] for r in query(db, "SELECT DISTINCT split_reason FROM kairos_session")}
    assert {"co_contracting", "single"} <= reasons
    # Every KAIROS session of a split LHEO session keeps the mandataire.
    assert (
        scalar(
            db,
            "SELECT COUNT(*) FROM kairos_session k JOIN formation f ON f.source = k.source "
            "AND f.carif_formation_numero = k.carif_formation_numero "
            "WHERE k.mandataire_siret <> f.mandataire_siret",
        )
        == 0
    )


# ----------------------------------------------------------------------------- history


def _set_etat(numero: str, value: str) -> Callable[[etree._Element, str], None]:
    def edit(root: etree._Element, ns: str) -> None:
        session = root.find(f".//{{{ns}}}session[@numero='{numero}']")
        assert session is not None
        etat = session.find(f"{{{ns}}}etat-recrutement")
        assert etat is not None
        etat.text = value

    return edit


def _repeat_formation_with_an_extra_slot(root: etree._Element, ns: str) -> None:
    """A formation occurs twice (the later occurrence wins); its earlier occurrence has one
    recrutement more, on a session that keeps its numero in both."""
    offres = root.find(f"{{{ns}}}offres")
    assert offres is not None
    for formation in offres.iterfind(f"{{{ns}}}formation"):
        for recrutement in formation.iter(f"{{{ns}}}recrutement"):
            start = recrutement.find(f"{{{ns}}}heure-debut")
            if start is None:
                continue
            offres.append(copy.deepcopy(formation))
            extra = copy.deepcopy(recrutement)
            extra_start = extra.find(f"{{{ns}}}heure-debut")
            assert extra_start is not None
            extra_start.text = "07h05"
            recrutement.addnext(extra)
            return
    raise AssertionError("no recrutement with a start time in the generated file")


def test_a_repeated_session_keeps_only_its_last_occurrences_slots(db: str, tmp_path: Path) -> None:
    clean = generated(tmp_path)
    load_snapshot(clean, source="occ", config=CONFIG, db_url=db)
    counts = json.loads(last_ledger(db).counts_json)
    assert (counts["duplicate_sessions"], counts["orphan_slots"]) == (0, 0)
    slots = scalar(db, "SELECT COUNT(*) FROM recruitment_slot WHERE closed_at IS NULL")

    repeated = edited(clean, tmp_path / "repeated.xml", _repeat_formation_with_an_extra_slot)
    # A full read (no formation skipped as unchanged: both occurrences are staged).
    load_snapshot(repeated, source="occ", config=CONFIG, db_url=db, fast_path=False)
    counts = json.loads(last_ledger(db).counts_json)
    # The earlier copy of the formation is superseded whole, its sessions' slots with it.
    assert counts["duplicate_formations"] == 1
    assert counts["superseded_sessions"] > 0 and counts["orphan_slots"] > 0
    # The earlier occurrence's extra slot went with it; nothing else changed.
    assert scalar(db, "SELECT COUNT(*) FROM recruitment_slot WHERE start_time = '07h05'") == 0
    assert scalar(db, "SELECT COUNT(*) FROM recruitment_slot WHERE closed_at IS NULL") == slots
    assert last_ledger(db).status == "noop"


def test_change_history_and_as_of(db: str, tmp_path: Path) -> None:
    offers = generated(tmp_path)
    numero = "SE7-3-1-1"
    first = load_snapshot(offers, source="occ", config=CONFIG, db_url=db)
    old = scalar(
        db, "SELECT etat_recrutement FROM kairos_session WHERE carif_session_numero = :n", n=numero
    )
    new = "2" if old != 2 else "3"
    between = datetime.now(UTC)
    time.sleep(0.01)
    changed = edited(offers, tmp_path / "changed.xml", _set_etat(numero, new))
    second = load_snapshot(changed, source="occ", config=CONFIG, db_url=db)
    kairos_rows = scalar(
        db, "SELECT COUNT(*) FROM kairos_session WHERE carif_session_numero = :n", n=numero
    )
    assert second.status == "succeeded"
    assert second.sessions_updated == kairos_rows >= 1
    assert second.sessions_inserted == second.sessions_closed == 0
    assert second.sessions_unchanged == first.sessions_inserted - kairos_rows
    versions = query(
        db,
        "SELECT v.version_no, v.change_kind, v.valid_to_run_id FROM kairos_session_version v "
        "JOIN kairos_session k ON k.id = v.kairos_session_id WHERE k.carif_session_numero = :n "
        "ORDER BY k.id, v.version_no",
        n=numero,
    )
    assert versions[:2] == [(1, "insert", second.run_id), (2, "update", None)]

    engine = get_engine(db)
    with engine.connect() as conn:
        changes = changes_in_last_run(conn, "occ")
        assert {c["carif_session_numero"] for c in changes} == {numero}
        assert {c["change_kind"] for c in changes} == {"update"}
        change = changes[0]
        assert json.loads(change["snapshot"])["etat_recrutement"] == int(new)
        assert json.loads(change["previous_snapshot"])["etat_recrutement"] == old
        then = {
            r["carif_session_numero"]: json.loads(r["snapshot"])
            for r in sessions_as_of(conn, "occ", between)
        }
        now = {
            r["carif_session_numero"]: json.loads(r["snapshot"])
            for r in sessions_as_of(conn, "occ", datetime.now(UTC))
        }
        before_first = sessions_as_of(conn, "occ", datetime(2000, 1, 1, tzinfo=UTC))
    engine.dispose()
    assert then[numero]["etat_recrutement"] == old
    assert now[numero]["etat_recrutement"] == int(new)
    assert len(then) == len(now) and before_first == []


def _drop_formation(numero: str) -> Callable[[etree._Element, str], None]:
    def edit(root: etree._Element, ns: str) -> None:
        formation = root.find(f".//{{{ns}}}formation[@numero='{numero}']")
        assert formation is not None
        formation.getparent().remove(formation)  # type: ignore[union-attr]

    return edit


def test_vanished_sessions_are_closed_then_reopened(db: str, tmp_path: Path) -> None:
    offers = generated(tmp_path)
    load_snapshot(offers, source="occ", config=CONFIG, db_url=db)
    gone = scalar(db, "SELECT COUNT(*) FROM kairos_session WHERE carif_formation_numero = 'F7-5'")
    gone_slots = scalar(
        db,
        "SELECT COUNT(*) FROM recruitment_slot r JOIN kairos_session k"
        " ON k.id = r.kairos_session_id WHERE k.carif_formation_numero = 'F7-5'",
    )
    smaller = edited(offers, tmp_path / "smaller.xml", _drop_formation("F7-5"))
    run = load_snapshot(smaller, source="occ", config=CONFIG, db_url=db)
    assert run.sessions_closed == gone > 0 and run.slots_closed == gone_slots
    closed = query(
        db,
        "SELECT closed_at IS NOT NULL, closed_run_id FROM kairos_session "
        "WHERE carif_formation_numero = 'F7-5'",
    )
    assert closed == [(True, run.run_id)] * gone  # kept, never deleted
    assert scalar(db, "SELECT COUNT(*) FROM kairos_session WHERE closed_at IS NOT NULL") == gone
    assert (
        scalar(db, "SELECT COUNT(*) FROM kairos_session_version WHERE change_kind = 'close'")
        == gone
    )
    assert (
        scalar(db, "SELECT closed_run_id FROM formation WHERE carif_formation_numero = 'F7-5'")
        == run.run_id
    )

    back = load_snapshot(offers, source="occ", config=CONFIG, db_url=db)
    assert back.sessions_updated == gone and back.sessions_closed == 0
    assert scalar(db, "SELECT COUNT(*) FROM kairos_session WHERE closed_at IS NOT NULL") == 0
    assert (
        scalar(db, "SELECT COUNT(*) FROM kairos_session_version WHERE change_kind = 'reopen'")
        == gone
    )


def test_mass_closing_is_refused_and_changes_nothing(db: str, tmp_path: Path) -> None:
    offers = generated(tmp_path)
    load_snapshot(offers, source="occ", config=CONFIG, db_url=db)
    before = state(db)

    def keep_ten(root: etree._Element, ns: str) -> None:
        offres = root.find(f"{{{ns}}}offres")
        assert offres is not None
        for formation in list(offres)[10:]:
            offres.remove(formation)

    small = edited(offers, tmp_path / "small.xml", keep_ten)
    with pytest.raises(SnapshotRefused, match=r"refused as suspect.*max_close_share 20%"):
        load_snapshot(small, source="occ", config=CONFIG, db_url=db)
    assert state(db) == before
    ledger = last_ledger(db)
    assert ledger.status == "failed" and "SnapshotRefused" in ledger.error

    # The share is configurable: a source allowing 95 % takes the same file.
    load_snapshot(offers, source="loose", config=CONFIG, db_url=db)
    assert load_snapshot(small, source="loose", config=CONFIG, db_url=db).sessions_closed > 0


def test_lheo_version_must_match_the_configured_one(db: str, tmp_path: Path) -> None:
    with pytest.raises(SnapshotRefused, match=r"configured as LHEO 2\.2"):
        load_snapshot(generated(tmp_path), source="nor", config=CONFIG, db_url=db)
    assert scalar(db, "SELECT COUNT(*) FROM kairos_session") == 0
    assert last_ledger(db).status == "failed"


# ----------------------------------------------------------------------------- rollback


def test_truncated_file_rolls_back_everything(db: str, tmp_path: Path) -> None:
    offers = generated(tmp_path)
    load_snapshot(offers, source="occ", config=CONFIG, db_url=db)
    before = state(db)
    bigger = generated(tmp_path, formations=120, invalid_rate=0.05)
    truncated = tmp_path / "truncated.xml"
    data = bigger.read_bytes()
    truncated.write_bytes(data[: int(len(data) * 0.8)])
    staged: list[int] = []
    original = load_module.Stager.flush

    def counting_flush(self: Any) -> None:
        staged.append(len(self.buffers["stg_session"]))
        original(self)

    load_module.Stager.flush = counting_flush  # type: ignore[method-assign]
    try:
        with pytest.raises(DocumentError):
            # batch_size=1: formations are staged (and quarantined) before the file breaks.
            load_snapshot(truncated, source="occ", config=CONFIG, db_url=db, batch_size=1)
    finally:
        load_module.Stager.flush = original  # type: ignore[method-assign]
    assert sum(staged) > 100  # the failure came mid-load, after real staging writes
    assert state(db) == before
    ledger = last_ledger(db)
    assert ledger.status == "failed" and "DocumentError" in ledger.error
    assert ledger.finished_at is not None


def test_failure_in_the_upsert_step_rolls_back(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    offers = generated(tmp_path)
    load_snapshot(offers, source="occ", config=CONFIG, db_url=db)
    before = state(db)
    changed = edited(offers, tmp_path / "changed.xml", _set_etat("SE7-3-1-1", "3"))
    changed = edited(changed, tmp_path / "changed2.xml", _drop_formation("F7-5"))

    def boom(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("injected after the session upsert")

    monkeypatch.setattr(load_module, "record_versions", boom)
    with pytest.raises(RuntimeError, match="injected"):
        load_snapshot(changed, source="occ", config=CONFIG, db_url=db)
    assert state(db) == before
    assert "injected" in last_ledger(db).error
    monkeypatch.undo()
    assert load_snapshot(changed, source="occ", config=CONFIG, db_url=db).sessions_closed > 0


# ----------------------------------------------------------------------------- lock


def test_a_second_run_waits_then_fails_clearly(db: str, tmp_path: Path) -> None:
    offers = generated(tmp_path, formations=5)
    engine = get_engine(db)
    try:
        with source_lock(engine, "occ", timeout=1):
            started = time.monotonic()
            with pytest.raises(LockTimeout, match="another load of source 'occ' is running"):
                load_snapshot(offers, source="occ", config=CONFIG, db_url=db, lock_timeout=0.6)
            assert time.monotonic() - started >= 0.6
            # Another source is not blocked.
            assert (
                load_snapshot(offers, source="loose", config=CONFIG, db_url=db).status
                == "succeeded"
            )
    finally:
        engine.dispose()
    assert last_ledger(db).status == "succeeded"
    assert "LockTimeout" in scalar(db, "SELECT error FROM run_ledger WHERE source = 'occ'")
    assert load_snapshot(offers, source="occ", config=CONFIG, db_url=db).status == "succeeded"


def test_two_concurrent_loads_of_one_source(
    db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    offers = generated(tmp_path, formations=10)
    entered = threading.Event()
    original = load_module.apply_staged

    def slow_apply(*args: Any, **kwargs: Any) -> None:
        entered.set()
        time.sleep(2.0)
        original(*args, **kwargs)

    monkeypatch.setattr(load_module, "apply_staged", slow_apply)
    results: dict[str, Any] = {}

    def first() -> None:
        results["first"] = load_snapshot(offers, source="occ", config=CONFIG, db_url=db)

    thread = threading.Thread(target=first)
    thread.start()
    assert entered.wait(30)
    with pytest.raises(LockTimeout):
        load_snapshot(offers, source="occ", config=CONFIG, db_url=db, lock_timeout=0.5)
    thread.join(60)
    assert results["first"].status == "succeeded"
    assert scalar(db, "SELECT COUNT(*) FROM run_ledger WHERE status = 'succeeded'") == 1


# ----------------------------------------------------------------------------- other origins


def test_kairos_origin_slots_are_never_touched(db: str, tmp_path: Path) -> None:
    offers = generated(tmp_path)
    first = load_snapshot(offers, source="occ", config=CONFIG, db_url=db)
    session_id = scalar(db, "SELECT MIN(id) FROM kairos_session")
    engine = get_engine(db)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO recruitment_slot (kairos_session_id, origin, slot_key, modality, "
                "content_hash, first_seen_run_id, last_seen_run_id) "
                "VALUES (:s, 'kairos', 'ICO-1', 'ico', 'x', :r, :r)"
            ),
            {"s": session_id, "r": first.run_id},
        )
    engine.dispose()
    changed = edited(offers, tmp_path / "changed.xml", _set_etat("SE7-3-1-1", "3"))
    run = load_snapshot(changed, source="occ", config=CONFIG, db_url=db)
    assert run.slots_closed == 0
    assert query(
        db, "SELECT closed_at, last_seen_run_id FROM recruitment_slot WHERE origin = 'kairos'"
    ) == [(None, first.run_id)]


@pytest.mark.postgres
def test_the_load_transaction_has_its_own_memory_budget(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The set-based steps run with KAIROS_LOAD_WORK_MEM for sorts and hashes (the server's
    4 MB default spills million-row sorts to disk), set for the load's transaction only."""
    engine = get_engine(postgres_url)
    migrate(engine)
    seen: dict[str, str] = {}
    original = load_module.apply_staged

    def spy(conn: Any, *args: Any, **kwargs: Any) -> None:
        for name in ("work_mem", "maintenance_work_mem"):
            seen[name] = conn.exec_driver_sql(f"SHOW {name}").scalar_one()
        original(conn, *args, **kwargs)

    monkeypatch.setattr(load_module, "apply_staged", spy)
    monkeypatch.setenv("KAIROS_LOAD_WORK_MEM", "48MB")
    with engine.connect() as conn:
        default = conn.exec_driver_sql("SHOW work_mem").scalar_one()
    assert default != "48MB"
    entry = load_snapshot(generated(tmp_path), source="occ", config=CONFIG, db_url=postgres_url)
    assert entry.status == "succeeded"
    assert seen == {"work_mem": "48MB", "maintenance_work_mem": "48MB"}
    with engine.connect() as conn:  # SET LOCAL: gone with the transaction
        assert conn.exec_driver_sql("SHOW work_mem").scalar_one() == default
    engine.dispose()
