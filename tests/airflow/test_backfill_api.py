"""A backfill created through Airflow's REST API with the body the UI's dialog sends.

Airflow 3.3.2's backfill dialog sends the params form's values only when "Override
parameters on existing runs" is ticked; otherwise `dag_run_conf` is null and the runs get
the form's defaults: every source, send the report. The plan must make such a backfill
safe (reports written, nothing e-mailed) and say first what it will process and why.

The API is Airflow's own FastAPI application, served in-process (all users admin, as the
simple auth manager allows for tests); the created runs are executed in-process the way
`dag.test()` does, the report from their asset event, with a loopback SMTP server.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pendulum
import pytest
from airflow_project import Project, offers, run_queued, task_states, today_paris, unpause


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    from airflow.api_fastapi.app import create_app

    with TestClient(create_app(apps="core")) as client:
        yield client


def _ui_backfill_body(days: list[datetime.date], conf: dict[str, Any] | None) -> dict[str, Any]:
    """What the dialog posts (seen in Chromium's network log with Airflow 3.3.2): the date
    pickers' day range in Paris as UTC with milliseconds; conf null unless "Override
    parameters" is ticked, then every field of the form."""
    start = pendulum.datetime(days[0].year, days[0].month, days[0].day, tz="Europe/Paris")
    end = pendulum.datetime(days[-1].year, days[-1].month, days[-1].day, tz="Europe/Paris")
    end = end.add(days=1).subtract(microseconds=1000)
    return {
        "dag_id": "kairos_offer_sync",
        "from_date": start.in_tz("UTC").isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "to_date": end.in_tz("UTC").isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "max_active_runs": 1,
        "reprocess_behavior": "none",
        "run_backwards": False,
        "run_on_latest_version": True,
        "dag_run_conf": conf,
    }


def _backfill_runs(api: Any, body: dict[str, Any]) -> list[str]:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    response = api.post("/api/v2/backfills", json=body)
    assert response.status_code == 200, response.text
    backfill_id = response.json()["id"]
    with create_session() as session:
        return [
            r.run_id
            for r in session.query(DagRun)
            .filter(DagRun.backfill_id == backfill_id)
            .order_by(DagRun.logical_date)
        ]


def _report_from_last_event(smtp: list[Any]) -> dict[str, Any]:
    """The report DAG's step, fed with the sessions asset event the backfill emitted."""
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    from pipelines.report_step import report_request, report_step

    with create_session() as session:
        event = session.query(AssetEvent).order_by(AssetEvent.id.desc()).first()
        assert event is not None
        extra = dict(event.extra)
    request = report_request({}, [extra], run_date=today_paris())
    return {"extra": extra, "request": request, "done": report_step(request)}


def test_ui_backfill_without_conf_processes_defaults_and_sends_nothing(
    sqlite_project: Project,
    dags: dict[str, Any],
    api: Any,
    smtp: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    project = sqlite_project
    yesterday = today_paris() - datetime.timedelta(days=1)
    for seed, source in enumerate(("sigma-occitanie", "smf-normandie"), start=20):
        data = offers(project.root / f"{source}.xml", seed=seed, formations=2, day=yesterday)
        project.archive(source, yesterday, data)
    unpause("kairos_offer_sync")
    caplog.set_level("INFO", logger="pipelines.orchestration")

    run_ids = _backfill_runs(api, _ui_backfill_body([yesterday], conf=None))
    assert len(run_ids) == 1
    run = run_queued(dags["kairos_offer_sync"], run_ids[0])
    assert str(run.state) == "success", task_states(run)
    plan = [r.getMessage() for r in caplog.records if "plan of this" in r.getMessage()]
    assert plan and plan[0].startswith(
        "plan of this backfill run: sources sigma-occitanie, smf-normandie "
        "(default: every configured source)"
    )
    assert "send_email=False (backfill without send_email in its conf" in plan[0]

    report = _report_from_last_event(smtp)
    assert report["extra"]["send_email"] is False
    assert report["request"]["send_email"] is False
    # The reports are written (one per source, of the check run each night stored)...
    written = {r["source"]: r for r in report["done"]["reports"]}
    assert sorted(written) == ["sigma-occitanie", "smf-normandie"]
    assert all(r["sent_to"] == 0 for r in written.values())
    assert {s: r["check_run_id"] for s, r in written.items()} == report["extra"]["check_runs"]
    # ...and nobody got an e-mail.
    assert smtp == []


def test_ui_backfill_with_conf_selects_one_source(
    sqlite_project: Project,
    dags: dict[str, Any],
    api: Any,
    smtp: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    project = sqlite_project
    days = [today_paris() - datetime.timedelta(days=n) for n in (2, 1)]
    for day in days:
        data = offers(project.root / f"{day}.xml", seed=30, formations=2, day=days[0])
        project.archive("smf-normandie", day, data)
    unpause("kairos_offer_sync")
    caplog.set_level("INFO", logger="pipelines.orchestration")

    # "Override parameters" ticked: the form's values go along, as a conf.
    conf = {
        "sources": ["smf-normandie"],
        "as_of": None,
        "dry_run": False,
        "send_email": True,
        "snapshot_file": None,
    }
    run_ids = _backfill_runs(api, _ui_backfill_body(days, conf=conf))
    assert len(run_ids) == 2
    runs = [run_queued(dags["kairos_offer_sync"], run_id) for run_id in run_ids]
    assert [str(r.state) for r in runs] == ["success", "success"], [task_states(r) for r in runs]
    for run in runs:
        sources = {i for (t, i), _s in task_states(run).items() if t == "source.load"}
        assert sources == {0}  # one mapped source per run
    plans = [r.getMessage() for r in caplog.records if "plan of this" in r.getMessage()]
    assert len(plans) == 2
    assert all("sources smf-normandie (conf)" in p and "send_email=True (conf)" in p for p in plans)
    report = _report_from_last_event(smtp)
    assert report["request"]["sources"] == ["smf-normandie"]
    assert [r["sent_to"] for r in report["done"]["reports"]] == [1]
    assert [to for to, _message in smtp] == [["region-normandie@example.org"]]


def test_failed_nights_of_a_backfill_come_as_one_digest(
    sqlite_project: Project,
    dags: dict[str, Any],
    api: Any,
    smtp: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two past nights with no archived snapshot: both runs fail, one e-mail lists both."""
    monkeypatch.setenv("KAIROS_ALERT_TO", "astreinte@example.org")
    days = [today_paris() - datetime.timedelta(days=n) for n in (5, 4)]
    unpause("kairos_offer_sync")
    conf = {"sources": ["smf-normandie"], "send_email": False}
    run_ids = _backfill_runs(api, _ui_backfill_body(days, conf=conf))
    runs = [run_queued(dags["kairos_offer_sync"], run_id) for run_id in run_ids]
    assert [str(r.state) for r in runs] == ["failed", "failed"]
    digest = [task_states(r)[("backfill_digest", -1)] for r in runs]
    assert digest == ["success", "success"]
    # Nothing after the first night (a run of the backfill was still queued); one digest
    # after the last, naming both nights and the source's error.
    assert len(smtp) == 1
    to, message = smtp[0]
    assert to == ["astreinte@example.org"]
    assert message["Subject"] == (
        "[kairos-sync] kairos_offer_sync: backfill ended, 2 night(s) failed"
    )
    body = message.get_content()
    for day in days:
        assert f"failed for {day.isoformat()}: smf-normandie" in body
    assert body.count("no archived snapshot") == 2
