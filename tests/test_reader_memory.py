"""The reader streams: peak memory does not grow with the file (docs/performance.md).

Each read runs in a fresh interpreter so its peak RSS is its own; a file 10× larger must
stay within a fixed margin of the smaller one's peak.
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
from transforms.reader import read_offers
count = sum(1 for _ in read_offers(sys.argv[1]))
print(json.dumps({"count": count,
                  "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

MARGIN_KIB = 12 * 1024  # allocator noise and lxml's buffers, not per-record growth


def peak_while_reading(path: Path) -> tuple[int, int]:
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    data = json.loads(out.stdout)
    return int(data["count"]), int(data["peak_kib"])


@pytest.mark.slow
def test_peak_memory_is_flat(tmp_path: Path) -> None:
    small, large = tmp_path / "small.xml.gz", tmp_path / "large.xml.gz"
    write_offers(small, formations=1_500, seed=1, lheo_version="2.3")
    write_offers(large, formations=15_000, seed=1, lheo_version="2.3")
    small_count, small_peak = peak_while_reading(small)
    large_count, large_peak = peak_while_reading(large)
    assert (small_count, large_count) == (1_500, 15_000)
    assert large_peak - small_peak < MARGIN_KIB, (small_peak, large_peak)
