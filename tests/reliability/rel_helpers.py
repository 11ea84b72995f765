"""Helpers of the reliability and security tests: snapshots, queries, CLI.

A module of its own (not conftest.py): several `conftest` modules exist in tests/, so
`from conftest import …` would depend on collection order.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lxml import etree
from sqlalchemy import text

from core.db import PROJECT_ROOT, get_engine
from samples.generator import write_offers

NS23 = "http://lheo.gouv.fr/2.3"
NS22 = "http://www.lheo.org/2.2"
CONFIG_YAML = """\
sources:
  occ:
    lheo_version: "2.3"
    lock_timeout_seconds: 60
  nor:
    lheo_version: "2.2"
    lock_timeout_seconds: 60
"""
# Tables a refused or failed load must leave exactly as they were.
STATE_TABLES = (
    "kairos_session",
    "recruitment_slot",
    "kairos_session_version",
    "recruitment_slot_version",
    "formation",
    "action",
    "organisation",
    "quarantine",
)


def generated(
    folder: Path, *, formations: int = 30, version: str = "2.3", seed: int = 7, name: str = ""
) -> Path:
    path = folder / (name or f"offers-{version}-{formations}-{seed}.xml")
    write_offers(path, formations=formations, seed=seed, lheo_version=version)
    return path


def edited(source: Path, target: Path, edit: Callable[[etree._Element], None]) -> Path:
    tree = etree.parse(str(source))
    edit(tree.getroot())
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
    """Everything a refused or failed load must leave untouched (ledger excluded)."""
    order = {"organisation": "siret"}
    return [
        (table, query(url, f"SELECT * FROM {table} ORDER BY {order.get(table, 'id')}"))
        for table in STATE_TABLES
    ]


def ledger(url: str) -> list[Any]:
    return query(url, "SELECT * FROM run_ledger ORDER BY id")


def open_keys(url: str, source: str = "occ") -> set[tuple[str, str]]:
    rows = query(
        url,
        "SELECT carif_session_numero, dispensateur_siret FROM kairos_session "
        "WHERE source = :s AND closed_at IS NULL",
        s=source,
    )
    return {(r[0], r[1]) for r in rows}


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAIROS_")}
    env.update(extra)
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    """`kairos-sync ARGS` in a real subprocess (what cron or Airflow would run)."""
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        capture_output=True,
        text=True,
        env=env or cli_env(),
        timeout=timeout,
        cwd=PROJECT_ROOT,
        check=False,
    )
