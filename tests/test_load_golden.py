"""The database a load produces, compared with the one the code made before a restructure.

`tests/fixtures/load_golden.json` holds a digest of every table after loading a fixed corpus
(two generated snapshots, LHEO 2.2 and 2.3 with schema faults; then the reference corpus of
real offers, when ../shared is beside the checkout). The digests were computed with the
code as it was before the base package `core/` was split out (commit 18bd26f), so a move of
modules that changes what a load writes fails here. Timestamps, the run ledger and the
loader's code fingerprint (`formation_digest_basis`) are left out: they change by nature.
To accept a deliberate change of the rows, run this file with KAIROS_WRITE_GOLDEN=1.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from pathlib import Path

import pytest
from sqlalchemy import DateTime, create_engine, inspect, text

from core.db import get_engine, migrate
from pipelines.load import load_snapshot
from samples.generator import write_offers

GOLDEN = Path(__file__).parent / "fixtures" / "load_golden.json"
SHARED_DIR = Path(__file__).resolve().parents[2] / "shared"
SKIPPED_TABLES = {"run_ledger", "alembic_version", "formation_digest_basis"}


def _digests(url: str, work: Path) -> dict[str, list[object]]:
    engine = create_engine(url)
    inspector = inspect(engine)
    digests: dict[str, list[object]] = {}
    try:
        with engine.connect() as conn:
            for table in sorted(set(inspector.get_table_names()) - SKIPPED_TABLES):
                columns = [
                    c["name"]
                    for c in inspector.get_columns(table)
                    if not isinstance(c["type"], DateTime)
                ]
                rows = conn.execute(text(f"SELECT {', '.join(columns)} FROM {table}")).fetchall()
                # The quarantine names the snapshot's path: the same wherever the test runs.
                body = "\n".join(sorted(repr(tuple(row)) for row in rows))
                body = body.replace(str(work), "<work>")
                digests[table] = [len(rows), hashlib.sha256(body.encode()).hexdigest()]
    finally:
        engine.dispose()
    return digests


def test_a_load_writes_the_same_rows_as_before(tmp_path: Path) -> None:
    work = tmp_path
    url = f"sqlite:///{work / 'kairos.sqlite'}"
    engine = get_engine(url)
    migrate(engine)
    engine.dispose()
    for source, version, seed in (("smf-normandie", "2.2", 11), ("sigma-occitanie", "2.3", 12)):
        offers = work / f"{source}.xml"
        write_offers(
            offers,
            formations=80,
            seed=seed,
            lheo_version=version,
            invalid_rate=0.1,
            reference_date=datetime.date(2026, 11, 1),
        )
        load_snapshot(offers, source=source, db_url=url)
    results = {"generated": _digests(url, work)}
    real = sorted((SHARED_DIR / "reference" / "real-lheo").glob("*.xml"))
    for offers in real:  # partial snapshots: each adds its offer, none closes another's
        load_snapshot(offers, source="smf-normandie", db_url=url, full_snapshot=False)
    if real:
        results["with_real_offers"] = _digests(url, work)
    if os.environ.get("KAIROS_WRITE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert results["generated"]["kairos_session"][0] > 100  # the corpus did load
    assert results["generated"] == golden["generated"]
    if not real:
        pytest.skip("../shared/reference/real-lheo is not beside the checkout: generated only")
    assert len(real) == 18
    assert results["with_real_offers"] == golden["with_real_offers"]
