"""The full load streams: peak memory does not grow with the file (docs/performance.md).

Same method as tests/test_reader_memory.py, on the whole load path (read, validate, map,
stage, set-based SQL) with the parallel workers: each load runs in a fresh interpreter on a
fresh SQLite database; its own peak RSS and its largest worker's must stay within a fixed
margin when the file is 10× larger. (SQLite's page cache is bounded by its cache_size.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from samples.generator import write_offers

MEASURE = """
import json, resource, sys
from core.config import SourceConfig, SourcesConfig
from core.db import get_engine, migrate
from pipelines.load import load_snapshot
url = "sqlite:///" + sys.argv[2]
engine = get_engine(url)
migrate(engine)
engine.dispose()
config = SourcesConfig({"occ": SourceConfig("occ", lheo_version="2.3")})
entry = load_snapshot(sys.argv[1], source="occ", config=config, db_url=url, workers=2)
print(json.dumps({"sessions": entry.sessions_inserted,
                  "workers": entry.counts.get("load_workers"),
                  "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "worker_peak_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""

MARGIN_KIB = 16 * 1024  # allocator noise, lxml's and SQLite's buffers; not per-record growth


def peak_while_loading(path: Path, database: Path) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path), str(database)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_parallel_load_peak_memory_is_flat(tmp_path: Path) -> None:
    small, large = tmp_path / "small.xml", tmp_path / "large.xml"
    write_offers(small, formations=250, seed=1, lheo_version="2.3")
    write_offers(large, formations=2_500, seed=1, lheo_version="2.3")
    first = peak_while_loading(small, tmp_path / "small.sqlite")
    second = peak_while_loading(large, tmp_path / "large.sqlite")
    assert first["workers"] == second["workers"] == 2
    assert second["sessions"] > 9 * first["sessions"] > 0
    assert second["peak_kib"] - first["peak_kib"] < MARGIN_KIB, (first, second)
    assert second["worker_peak_kib"] - first["worker_peak_kib"] < MARGIN_KIB, (first, second)
