"""Two runs of one source at once: a backfill holding the source while the
nightly run starts, as two real `kairos-sync load` processes, on SQLite (file lock) and
PostgreSQL (advisory lock). They are serialised; no row is duplicated or lost.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from lxml import etree
from rel_helpers import NS23, cli_env, edited, generated, ledger, open_keys, query

from core.db import PROJECT_ROOT, get_engine, migrate
from pipelines.load import load_snapshot

HERE = Path(__file__).resolve().parent


def _without(good: Path, target: Path, positions: slice) -> Path:
    def edit(root: etree._Element) -> None:
        offres = root.find(f"{{{NS23}}}offres")
        assert offres is not None
        for formation in offres.findall(f"{{{NS23}}}formation")[positions]:
            offres.remove(formation)

    return edited(good, target, edit)


def _reference_keys(file: Path, config: Path, tmp_path: Path) -> set[tuple[str, str]]:
    url = f"sqlite:///{tmp_path / ('ref-' + file.stem + '.sqlite')}"
    engine = get_engine(url)
    migrate(engine)
    engine.dispose()
    load_snapshot(file, source="occ", config=config, db_url=url)
    return open_keys(url)


def _popen(args: list[str], **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        args,
        env=cli_env(**env),
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_backfill_and_nightly_runs_of_one_source_are_serialised(
    db: str, tmp_path: Path, config_file: Path
) -> None:
    good = generated(tmp_path, formations=30)
    load_snapshot(good, source="occ", config=config_file, db_url=db)
    backfill = _without(good, tmp_path / "backfill.xml", slice(0, 2))
    nightly = _without(good, tmp_path / "nightly.xml", slice(-3, None))
    marker = tmp_path / "backfill-paused"
    common = ["--source", "occ", "--config", str(config_file), "--db", db]

    # The backfill pauses 2 s inside its transaction, holding the source's lock…
    first = _popen(
        [sys.executable, str(HERE / "kill_driver.py"), "load", str(backfill), *common],
        KAIROS_PAUSE_MARKER=str(marker),
        KAIROS_PAUSE_SECONDS="2",
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "the backfill never reached its transaction"
        time.sleep(0.05)
    # … when the nightly run starts.
    second = _popen([sys.executable, "-m", "pipelines.cli", "load", str(nightly), *common])
    _out1, err1 = first.communicate(timeout=120)
    _out2, err2 = second.communicate(timeout=120)
    assert first.returncode == 0, err1
    assert second.returncode == 0, err2

    runs = ledger(db)
    assert [r.status for r in runs] == ["succeeded"] * 3
    assert [Path(r.snapshot_file).name for r in runs[1:]] == ["backfill.xml", "nightly.xml"]
    assert str(runs[2].started_at) >= str(runs[1].finished_at), "the runs overlapped"
    # The final state is exactly the nightly snapshot's; nothing duplicated or lost.
    assert open_keys(db) == _reference_keys(nightly, config_file, tmp_path)
    total, distinct = query(
        db,
        "SELECT COUNT(*), COUNT(DISTINCT carif_session_numero || '|' || dispensateur_siret) "
        "FROM kairos_session WHERE source = 'occ'",
    )[0]
    assert total == distinct == len(_reference_keys(good, config_file, tmp_path))
    open_versions = query(
        db,
        "SELECT kairos_session_id, COUNT(*) FROM kairos_session_version "
        "WHERE valid_to IS NULL GROUP BY kairos_session_id HAVING COUNT(*) > 1",
    )
    assert open_versions == []
    # The two formations the backfill dropped are back (reopened), the nightly's are closed.
    assert (
        query(db, "SELECT COUNT(*) FROM kairos_session_version WHERE change_kind = 'reopen'")[0][0]
        > 0
    )
