"""Regenerate docs/sample-report/: the Region's report on the sample offers of `make run`.

Runs the main job (pipelines/demo.py: generated SMF and SIGMA offers, a sample KAIROS
adherent list and a sample KAIROS modalities export for SIGMA's source) in a scratch
folder, as of a fixed date, with two earlier check runs so that the trend chart has points,
then copies the report's HTML and charts into docs/sample-report/ and, when Debian's
Chromium is installed, a full-page screenshot (`capture-rapport.png`).

    .venv/bin/python tools/sample_report.py [--as-of 2026-12-03]
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipelines.demo import run_demo  # noqa: E402
from quality_checks.report import build_report  # noqa: E402

TARGET = ROOT / "docs" / "sample-report"
FILES = ("rapport.html", "tendance.png", "regles.png")


def screenshot(html: Path, png: Path) -> bool:
    """A headless-Chromium capture of the report (False when Chromium is not installed)."""
    chromium = shutil.which("chromium")
    if chromium is None:
        return False
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--hide-scrollbars",
                "--window-size=1100,4200",
                f"--screenshot={png}",
                html.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--as-of", default="2026-12-03", help="YYYY-MM-DD of the report")
    args = parser.parse_args()
    as_of = dt.date.fromisoformat(args.as_of)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        result = run_demo(work, as_of=as_of)
        for days in (14, 7):  # earlier checks: the trend has three points
            build_report(result.db_url, as_of - dt.timedelta(days=days), work / f"earlier-{days}")
        written = build_report(result.db_url, as_of, work / "report")
        TARGET.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            shutil.copyfile(written.directory / name, TARGET / name)
        captured = screenshot(TARGET / "rapport.html", TARGET / "capture-rapport.png")
    print(f"{TARGET}: {', '.join(FILES)}" + (", capture-rapport.png" if captured else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
