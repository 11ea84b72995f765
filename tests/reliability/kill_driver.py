"""`kairos-sync` with a pause inside the load transaction, for the kill tests (issue 8).

Run as `python kill_driver.py load FILE --source … --db …` with KAIROS_PAUSE_MARKER set:
once the run's ledger row is written and the load transaction has started touching the
target tables, the process writes its pid to the marker file and sleeps, so that the test
can SIGKILL it at a known point (staged rows uncommitted, ledger row 'running'). It hooks
SQLAlchemy's statement events only: no function of the loader is patched.
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
_seen_ledger = False


@event.listens_for(Engine, "before_cursor_execute")
def _pause(*args: Any) -> None:
    global _seen_ledger
    statement = str(args[2])
    if "INSERT INTO run_ledger" in statement:
        _seen_ledger = True
        return
    paused = MARKER.exists()
    if (
        _seen_ledger
        and not paused
        and "kairos_session" in statement
        and "run_ledger" not in statement
    ):
        MARKER.write_text(str(os.getpid()), encoding="utf-8")
        time.sleep(PAUSE)


if __name__ == "__main__":
    from pipelines.cli import main

    sys.argv = ["kairos-sync", *sys.argv[1:]]
    main()
