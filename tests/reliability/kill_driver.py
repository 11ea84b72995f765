"""`kairos-sync` with a pause inside the load transaction, for the kill tests.

Run as `python kill_driver.py load FILE --source … --db …` with KAIROS_PAUSE_MARKER set:
once the run's ledger row is written and the load transaction has started touching the
target tables, the process writes its pid to the marker file and sleeps, so that the test
can SIGKILL it at a known point (staged rows uncommitted, ledger row 'running'). It hooks
SQLAlchemy's statement events only: no function of the loader is patched.

KAIROS_PAUSE_AT (any command): pause instead before the first statement, after the run's
ledger row, that contains this text. KAIROS_RESUME_FILE: end the pause as soon as that file
exists (the test has done what it does at that point, e.g. terminated the backends).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

MARKER = Path(os.environ["KAIROS_PAUSE_MARKER"])
PAUSE = float(os.environ.get("KAIROS_PAUSE_SECONDS", "120"))
PAUSE_AT = os.environ.get("KAIROS_PAUSE_AT")
RESUME = Path(os.environ["KAIROS_RESUME_FILE"]) if "KAIROS_RESUME_FILE" in os.environ else None
_seen_ledger = False


def _paused_here(statement: str) -> bool:
    if PAUSE_AT is not None:
        return PAUSE_AT in statement
    return "kairos_session" in statement and "run_ledger" not in statement


def _sleep() -> None:
    deadline = time.monotonic() + PAUSE
    while time.monotonic() < deadline and not (RESUME is not None and RESUME.exists()):
        time.sleep(0.05)


@event.listens_for(Engine, "before_cursor_execute")
def _pause(*args: Any) -> None:
    global _seen_ledger
    statement = str(args[2])
    if "INSERT INTO run_ledger" in statement:
        _seen_ledger = True
        return
    if _seen_ledger and not MARKER.exists() and _paused_here(statement):
        MARKER.write_text(str(os.getpid()), encoding="utf-8")
        _sleep()


if __name__ == "__main__":
    from pipelines.cli import main

    sys.argv = ["kairos-sync", *sys.argv[1:]]
    main()
