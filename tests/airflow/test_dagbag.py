"""Every DAG file parses cleanly, cheaply, with no database or network access.

Parsing happens in a fresh subprocess with a guard installed before anything is imported:
any socket connection (PostgreSQL, HTTP, SMTP) or sqlite3 connection raises. The DAG
processor re-parses these files every few minutes, so the parse time is measured too.
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAGS = PROJECT_ROOT / "dags"
EXPECTED_DAGS = {"kairos_offer_sync", "kairos_region_report"}

_PARSE_SCRIPT = textwrap.dedent(
    """
    import json, socket, sqlite3, sys, time

    calls = []

    def _refuse(what):
        def guard(*args, **kwargs):
            calls.append(what)
            raise RuntimeError(f"{what} at DAG parse time")
        return guard

    socket.socket.connect = _refuse("socket.connect")
    socket.socket.connect_ex = _refuse("socket.connect_ex")
    socket.create_connection = _refuse("socket.create_connection")
    sqlite3.connect = _refuse("sqlite3.connect")

    started = time.perf_counter()
    from airflow.dag_processing.dagbag import DagBag
    imported = time.perf_counter()
    bag = DagBag(dag_folder=sys.argv[1])
    parsed = time.perf_counter()
    print(json.dumps({
        "dags": sorted(bag.dag_ids),
        "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
        "guard_calls": calls,
        "airflow_import_seconds": imported - started,
        "parse_seconds": parsed - imported,
        "per_file": {str(s.file): s.duration.total_seconds() for s in bag.dagbag_stats},
    }))
    """
)


@pytest.fixture(scope="module")
def parsed() -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", _PARSE_SCRIPT, str(DAGS)],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_no_import_errors_and_no_io_at_parse_time(parsed: dict[str, Any]) -> None:
    assert parsed["import_errors"] == {}
    assert parsed["guard_calls"] == []
    assert set(parsed["dags"]) == EXPECTED_DAGS


def test_parse_is_fast(parsed: dict[str, Any]) -> None:
    # Importing airflow itself is not ours; the DAG files must add little on top.
    assert parsed["parse_seconds"] < 5, parsed
    assert all(seconds < 2 for seconds in parsed["per_file"].values()), parsed["per_file"]


@pytest.fixture(scope="module")
def dags() -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return dict(bag.dags)


def test_sync_schedule_is_02h00_europe_paris(dags: dict[str, Any]) -> None:
    from airflow.sdk import CronTriggerTimetable

    dag = dags["kairos_offer_sync"]
    timetable = dag.timetable
    assert isinstance(timetable, CronTriggerTimetable)
    assert timetable.expression == "0 2 * * *"  # type: ignore[attr-defined]
    assert str(timetable.timezone) in ("Europe/Paris", "Timezone('Europe/Paris')")  # type: ignore[attr-defined]
    assert dag.max_active_runs == 1
    assert dag.catchup is False
    assert dag.on_failure_callback


def test_sync_next_runs_follow_paris_daylight_saving(dags: dict[str, Any]) -> None:
    """02:00 in Paris is 01:00 UTC in winter and 00:00 UTC in summer."""
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import DataInterval, TimeRestriction

    timetable = coerce_to_core_timetable(dags["kairos_offer_sync"].timetable)
    utc = datetime.UTC
    restriction = TimeRestriction(earliest=None, latest=None, catchup=True)

    def next_after(moment: datetime.datetime) -> datetime.datetime:
        info = timetable.next_dagrun_info(
            last_automated_data_interval=DataInterval(moment, moment), restriction=restriction
        )
        assert info is not None
        return info.run_after.astimezone(utc).replace(tzinfo=None)

    winter = next_after(datetime.datetime(2026, 1, 10, 1, 0, tzinfo=utc))
    summer = next_after(datetime.datetime(2026, 7, 10, 0, 0, tzinfo=utc))
    assert winter == datetime.datetime(2026, 1, 11, 1, 0)
    assert summer == datetime.datetime(2026, 7, 11, 0, 0)


def test_report_is_scheduled_on_the_sessions_asset(dags: dict[str, Any]) -> None:
    from airflow.sdk import Asset

    report = dags["kairos_region_report"]
    assets = list(report.timetable.asset_condition.objects)
    # Airflow normalises the URI with a trailing slash.
    assert [(a.name, a.uri.rstrip("/")) for a in assets] == [
        ("kairos_sessions", "kairos://sessions")
    ]
    sync = dags["kairos_offer_sync"]
    outlets = [o for t in sync.tasks for o in t.outlets if isinstance(o, Asset)]
    assert [o.uri.rstrip("/") for o in outlets] == ["kairos://sessions"]


def test_sync_params_schema(dags: dict[str, Any]) -> None:
    params = dags["kairos_offer_sync"].params
    schema = {name: params.get_param(name).schema for name in params}
    assert set(schema) == {"sources", "as_of", "dry_run", "send_email", "snapshot_file"}
    # Every field has a default, so every type admits null: the UI marks a field required
    # when its type does not (Airflow 3.3's trigger form), and these are all optional.
    assert schema["sources"]["type"] == ["null", "array"]
    assert schema["sources"]["items"] == {"type": "string"}
    assert schema["as_of"]["format"] == "date"
    assert schema["dry_run"]["type"] == ["null", "boolean"]
    assert schema["send_email"]["type"] == ["null", "boolean"]
    assert all("null" in s["type"] for s in schema.values())
    # The snapshot field says where the landing zone of this server is.
    assert str(Path(os.environ.get("KAIROS_LANDING_ZONE", "var/landing")).name) in (
        params.get_param("snapshot_file").description or ""
    )
    assert params["dry_run"] is False
    assert params["send_email"] is True
    assert params["snapshot_file"] is None
    # The defaults validate, and the schema refuses wrong types.
    params.validate()
    from airflow.sdk import Param

    with pytest.raises(Exception, match="is not of type"):
        Param(**{**_param_kwargs(params.get_param("dry_run")), "default": "yes"}).resolve()


def _param_kwargs(param: Any) -> dict[str, Any]:
    return {"default": param.value, **param.schema}


def test_report_params_schema(dags: dict[str, Any]) -> None:
    params = dags["kairos_region_report"].params
    assert set(params) == {"sources", "as_of", "send_email"}
    params.validate()


def test_sync_task_graph(dags: dict[str, Any]) -> None:
    dag = dags["kairos_offer_sync"]
    assert set(dag.task_ids) == {
        "plan",
        "migrate",
        "source.fetch",
        "source.load",
        "source.kairos_exports",
        "source.checks",
        "publish",
        "any_source_failed",
        "backfill_digest",
    }
    # One migration, before any source works (the mapped group is expanded over its output).
    assert dag.get_task("migrate").upstream_task_ids == {"plan"}
    assert dag.get_task("source.fetch").upstream_task_ids == {"migrate"}
    # any_source_failed stays a leaf: the run's state comes from its leaves.
    assert dag.get_task("any_source_failed").downstream_task_ids == set()
    assert dag.get_task("source.load").upstream_task_ids == {"source.fetch"}
    assert dag.get_task("publish").upstream_task_ids == {"source.checks"}
    assert dag.get_task("any_source_failed").trigger_rule == "one_failed"
