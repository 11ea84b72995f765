"""The per-test project layout of the Airflow tests (imported by conftest and the tests)."""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Project:
    """Where one test's project data lives (all under tmp)."""

    root: Path
    db_url: str
    landing: Path
    sources: Path
    config: Path
    reports: Path

    def source_dir(self, name: str) -> Path:
        return self.sources / name

    def archive(
        self, source: str, day: datetime.date, data: bytes, name: str = "offres.xml"
    ) -> Path:
        """Archive `data` as `source`'s snapshot of `day`, as a past night's fetch would."""
        folder = self.landing / source / day.isoformat()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        (folder / f"{name}.sha256").write_text(f"{digest}  {name}\n")
        return folder / name
