"""End-to-end runs of the DAGs with `dag.test()` on generated offers (SQLite and PostgreSQL).

What `dag.test()` cannot do in Airflow 3.3, and what is tested instead:

* It runs no scheduler, so an asset event does not start the report DAG by itself. The
  tests check the event (and its queue entry for the report DAG, which is what the
  scheduler acts on), then run the report DAG with `dag.test()` as the scheduler would.
* It always creates a *manual* run. For backfills, the real backfill is created with
  Airflow's own `_create_backfill` (what `airflow backfill create` and the UI call), and
  its queued runs are executed with the same in-process loop `dag.test()` uses.
  The scheduler itself running them is checked by `make airflow-check`
  (docs/deployment.md).
"""

from __future__ import annotations

import datetime
import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pendulum
import pytest
from airflow_project import (
    PROJECT_ROOT,
    Project,
    night,
    offers,
    query_rows,
    run_queued,
    task_states,
    today_paris,
    unpause,
)
from sqlalchemy import create_engine

PARIS = "Europe/Paris"
KAIROS_FIXTURES = PROJECT_ROOT / "tests" / "fixtures" / "kairos"

pytestmark = pytest.mark.slow


def _table_digest(db_url: str, table: str) -> str:
    rows = query_rows(db_url, f"SELECT * FROM {table}")
    return hashlib.sha256(repr(sorted(map(repr, rows))).encode()).hexdigest()


@pytest.fixture
def kairos_exports(project: Project) -> Iterator[Path]:
    folder = project.source_dir("smf-normandie") / "kairos"
    folder.mkdir()
    shutil.copy(KAIROS_FIXTURES / "adherents_utf8_pipe.csv", folder / "adherents.csv")
    shutil.copy(KAIROS_FIXTURES / "training_plans_utf8bom_pipe.csv", folder / "training_plans.csv")
    yield folder


@pytest.mark.usefixtures("kairos_exports")
def test_nightly_sync_then_rerun_changes_nothing(project: Project, dags: dict[str, Any]) -> None:
    today = today_paris()
    offers(project.source_dir("smf-normandie") / "offres.xml", seed=1)
    offers(project.source_dir("sigma-occitanie") / "offres.xml", seed=2)
    unpause("kairos_region_report")  # so that the asset event queues a report run
    sync = dags["kairos_offer_sync"]

    run = sync.test(logical_date=night(today))
    states = task_states(run)
    assert str(run.state) == "success", states
    assert states[("any_source_failed", -1)] == "skipped"
    assert states[("publish", -1)] == "success"

    # Both snapshots archived under <source>/<date>/ with their sha256.
    for source in ("smf-normandie", "sigma-occitanie"):
        archived = project.landing / source / today.isoformat() / "offres.xml"
        assert archived.is_file()
        assert (archived.parent / "offres.xml.sha256").read_text().split()[0] == hashlib.sha256(
            archived.read_bytes()
        ).hexdigest()
    exports = project.landing / "smf-normandie" / today.isoformat() / "kairos"
    assert sorted(p.name for p in exports.glob("*.csv")) == ["adherents.csv", "training_plans.csv"]

    ledger = query_rows(
        project.db_url,
        "SELECT run_kind, source, status FROM run_ledger ORDER BY id",
    )
    lheo = sorted((s, st) for k, s, st in ledger if k == "lheo")
    assert lheo == [("sigma-occitanie", "succeeded"), ("smf-normandie", "succeeded")]
    assert {(k, st) for k, _s, st in ledger if k in ("adherents", "training-plans")} == {
        ("adherents", "succeeded"),
        ("training-plans", "succeeded"),
    }
    as_of = query_rows(project.db_url, "SELECT DISTINCT source, as_of FROM quality_check_run")
    assert sorted((s, str(d)[:10]) for s, d in as_of) == [
        ("sigma-occitanie", today.isoformat()),
        ("smf-normandie", today.isoformat()),
    ]

    # The asset event carries what the report needs, and queues the report DAG.
    # The check run each source stored rides along, so that the report shows it.
    stored = query_rows(project.db_url, "SELECT source, id FROM quality_check_run")
    event, queued = _asset_event_and_queue()
    assert event == {
        "sources": ["sigma-occitanie", "smf-normandie"],
        "as_of": today.isoformat(),
        "logical_date": today.isoformat(),
        "send_email": True,
        "check_runs": {source: run_id for source, run_id in stored},
    }
    assert queued == ["kairos_region_report"]

    # Re-running the same date changes nothing: same archive, no data written.
    before = {t: _table_digest(project.db_url, t) for t in ("kairos_session", "recruitment_slot")}
    (project.source_dir("smf-normandie") / "offres.xml").write_bytes(b"<changed later/>")
    rerun = sync.test(logical_date=night(today))
    assert str(rerun.state) == "success", task_states(rerun)
    after = {t: _table_digest(project.db_url, t) for t in ("kairos_session", "recruitment_slot")}
    assert after == before
    statuses = query_rows(
        project.db_url,
        "SELECT run_kind, status FROM run_ledger WHERE run_kind IN "
        "('lheo', 'adherents', 'training-plans') ORDER BY id",
    )
    assert [st for _k, st in statuses[len(statuses) // 2 :]] == ["noop"] * (len(statuses) // 2)


def _asset_event_and_queue() -> tuple[dict[str, Any], list[str]]:
    from airflow.models.asset import AssetDagRunQueue, AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        asset = session.query(AssetModel).filter(AssetModel.name == "kairos_sessions").one()
        event = (
            session.query(AssetEvent)
            .filter(AssetEvent.asset_id == asset.id)
            .order_by(AssetEvent.id.desc())
            .first()
        )
        assert event is not None
        queued = [
            q.target_dag_id
            for q in session.query(AssetDagRunQueue).filter(AssetDagRunQueue.asset_id == asset.id)
        ]
        return dict(event.extra), queued


def test_one_source_failing_does_not_stop_the_others(
    sqlite_project: Project, dags: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = sqlite_project
    today = today_paris()
    offers(project.source_dir("smf-normandie") / "offres.xml", seed=3, formations=2)
    (project.source_dir("sigma-occitanie") / "offres.xml").write_bytes(b"not xml at all")
    sent: list[dict[str, Any]] = []
    import pipelines.notify as notify

    monkeypatch.setattr(
        notify,
        "send_mail",
        lambda settings, to, subject, body: sent.append(
            {"to": list(to), "subject": subject, "body": body}
        ),
    )
    monkeypatch.setenv("KAIROS_ALERT_TO", "ops@example.org")
    monkeypatch.setenv("KAIROS_SMTP_HOST", "127.0.0.1")  # resolved, never contacted (patched)
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.region.example")
    run = dags["kairos_offer_sync"].test(logical_date=night(today))
    states = task_states(run)
    assert str(run.state) == "failed"
    by_source = {
        task: {i: s for (t, i), s in states.items() if t == task}
        for task in ("source.load", "source.checks")
    }
    # Map index 0 is sigma-occitanie (sources are planned in name order).
    assert by_source["source.load"] == {0: "failed", 1: "success"}
    assert by_source["source.checks"] == {0: "upstream_failed", 1: "success"}
    assert states[("publish", -1)] == "success"  # the loaded source is published
    assert states[("any_source_failed", -1)] == "failed"
    ledger = query_rows(
        project.db_url, "SELECT source, status, error FROM run_ledger WHERE run_kind = 'lheo'"
    )
    assert sorted((s, st) for s, st, _e in ledger) == [
        ("sigma-occitanie", "failed"),
        ("smf-normandie", "succeeded"),
    ]
    assert "not an XML document" in next(e for s, _st, e in ledger if s == "sigma-occitanie")
    assert len(sent) == 1 and sent[0]["to"] == ["ops@example.org"]
    # The notice names the failed source and its error's first line, not a map index.
    assert sent[0]["subject"] == (
        f"[kairos-sync] kairos_offer_sync failed for {today.isoformat()}: sigma-occitanie"
    )
    assert "- sigma-occitanie, task source.load: " in sent[0]["body"]
    assert "not an XML document" in sent[0]["body"]
    runs_page = "https://airflow.region.example/dags/kairos_offer_sync/runs/"
    link = runs_page + quote(run.run_id, safe="")
    assert link in sent[0]["body"]


def test_dry_run_writes_nothing(sqlite_project: Project, dags: dict[str, Any]) -> None:
    project = sqlite_project
    today = today_paris()
    offers(project.source_dir("smf-normandie") / "offres.xml", seed=4, formations=2)
    run = dags["kairos_offer_sync"].test(
        logical_date=night(today),
        run_conf={"sources": ["smf-normandie"], "dry_run": True},
    )
    assert str(run.state) == "success", task_states(run)
    assert task_states(run)[("publish", -1)] == "skipped"  # no asset event, no report
    assert not (project.landing / "smf-normandie" / today.isoformat()).exists()
    tables = (
        query_rows(
            project.db_url,
            "SELECT count(*) FROM run_ledger WHERE run_kind = 'lheo'",
        )
        if _has_table(project.db_url, "run_ledger")
        else [(0,)]
    )
    assert tables == [(0,)]


def _has_table(db_url: str, table: str) -> bool:
    from sqlalchemy import inspect

    engine = create_engine(db_url)
    try:
        return inspect(engine).has_table(table)
    finally:
        engine.dispose()


def test_snapshot_file_outside_the_landing_zone_is_refused(
    sqlite_project: Project, dags: dict[str, Any], tmp_path: Path
) -> None:
    project = sqlite_project
    outside = tmp_path / "elsewhere.xml"
    offers(outside, seed=5, formations=1)
    run = dags["kairos_offer_sync"].test(
        logical_date=night(today_paris()),
        run_conf={"sources": ["smf-normandie"], "snapshot_file": str(outside)},
    )
    assert str(run.state) == "failed"
    assert task_states(run)[("source.fetch", 0)] == "failed"
    assert not _has_table(project.db_url, "run_ledger") or query_rows(
        project.db_url, "SELECT count(*) FROM run_ledger WHERE run_kind = 'lheo'"
    ) == [(0,)]


# --------------------------------------------------------------------------- report + SMTP


def test_region_report_arrives_by_smtp(
    project: Project, dags: dict[str, Any], smtp: list[Any]
) -> None:
    """Sync → asset event → report DAG (run as the scheduler would, with the event's values)."""
    today = today_paris()
    offers(project.source_dir("smf-normandie") / "offres.xml", seed=6, formations=3)
    offers(project.source_dir("sigma-occitanie") / "offres.xml", seed=7, formations=3)
    run = dags["kairos_offer_sync"].test(logical_date=night(today))
    assert str(run.state) == "success", task_states(run)
    event, _queued = _asset_event_and_queue()

    report_conf = {k: event[k] for k in ("sources", "as_of", "send_email")}
    report = dags["kairos_region_report"].test(run_conf=report_conf)
    assert str(report.state) == "success", task_states(report)
    recipients = sorted(r for rcpt, _m in smtp for r in rcpt)
    assert recipients == ["region-normandie@example.org", "region-occitanie@example.org"]
    for _rcpt, message in smtp:
        assert message["From"] == "kairos-sync@example.org"
        attachments = [p.get_filename() for p in message.iter_attachments()]
        assert any(name and name.endswith(".csv") for name in attachments), attachments
    for source in ("smf-normandie", "sigma-occitanie"):
        assert (project.reports / today.isoformat() / source / "sent.json").is_file()

    # Running the report again for the same date does not e-mail the Region twice.
    again = dags["kairos_region_report"].test(run_conf=report_conf)
    assert str(again.state) == "success"
    assert len(smtp) == 2


def test_report_request_merges_asset_events() -> None:
    from pipelines.report_step import report_request

    day = datetime.date(2026, 11, 3)
    events = [
        {"sources": ["a"], "as_of": "2026-11-01", "send_email": False},
        {"sources": ["b"], "as_of": "2026-11-02", "send_email": True},
    ]
    assert report_request(
        {"sources": [], "as_of": None, "send_email": True}, events, run_date=day
    ) == {
        "as_of": "2026-11-02",
        "sources": ["a", "b"],
        "send_email": True,
        "check_runs": {},
    }
    assert report_request({"as_of": "2026-10-01", "send_email": False}, events, run_date=day) == {
        "as_of": "2026-10-01",
        "sources": ["a", "b"],
        "send_email": False,
        "check_runs": {},
    }
    # The check runs the syncs stored go to the report of their date, not of another one.
    events[0]["check_runs"] = {"a": 7}
    events[1]["check_runs"] = {"b": 9}
    assert report_request({}, events, run_date=day)["check_runs"] == {"b": 9}
    assert report_request({"as_of": "2026-11-01"}, events, run_date=day)["check_runs"] == {}
    assert report_request({}, [], run_date=day)["as_of"] == "2026-11-03"


# --------------------------------------------------------------------------- backfill


def test_backfill_three_dates_each_with_its_own_snapshot(
    sqlite_project: Project, dags: dict[str, Any]
) -> None:
    from airflow.models.backfill import _create_backfill
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    project = sqlite_project
    today = today_paris()
    days = [today - datetime.timedelta(days=n) for n in (3, 2, 1)]
    shas = {}
    scratch = project.root / "scratch"
    scratch.mkdir()
    for index, day in enumerate(days):
        # Growing offers (same seed, more formations): each night adds sessions.
        data = offers(scratch / f"{day}.xml", seed=8, formations=3 + index, day=days[0])
        shas[day] = project.archive("smf-normandie", day, data).read_bytes()
    # The source folder holds *today's* file: a backfill must never load it.
    todays = offers(project.source_dir("smf-normandie") / "offres.xml", seed=99, formations=2)

    unpause("kairos_offer_sync")
    backfill = _create_backfill(
        dag_id="kairos_offer_sync",
        from_date=night(days[0]),
        to_date=night(days[-1]),
        max_active_runs=1,
        reverse=False,
        dag_run_conf={"sources": ["smf-normandie"]},
        triggering_user_name="pytest",
    )
    with create_session() as session:
        run_ids = [
            r.run_id
            for r in session.query(DagRun)
            .filter(DagRun.backfill_id == backfill.id)
            .order_by(DagRun.logical_date)
        ]
    assert len(run_ids) == 3
    runs = [run_queued(dags["kairos_offer_sync"], run_id) for run_id in run_ids]
    assert [str(r.state) for r in runs] == ["success"] * 3, [task_states(r) for r in runs]
    assert [str(r.run_type) for r in runs] == ["backfill"] * 3
    assert [pendulum.instance(r.logical_date).in_tz(PARIS).date() for r in runs] == days

    ledger = query_rows(
        project.db_url,
        "SELECT snapshot_file, snapshot_sha256, status FROM run_ledger "
        "WHERE run_kind = 'lheo' ORDER BY id",
    )
    assert [Path(f).parent.name for f, _s, _st in ledger] == [d.isoformat() for d in days]
    assert [s for _f, s, _st in ledger] == [hashlib.sha256(shas[d]).hexdigest() for d in days]
    assert all(st == "succeeded" for _f, _s, st in ledger)
    as_of = query_rows(project.db_url, "SELECT as_of FROM quality_check_run ORDER BY id")
    assert [str(d)[:10] for (d,) in as_of] == [d.isoformat() for d in days]
    assert hashlib.sha256(todays).hexdigest() not in {s for _f, s, _st in ledger}
    assert not (project.landing / "smf-normandie" / today.isoformat()).exists()

    # Re-running a backfilled date changes nothing: the loader says noop.
    rerun = dags["kairos_offer_sync"].test(
        logical_date=night(days[-1]), run_conf={"sources": ["smf-normandie"]}
    )
    assert str(rerun.state) == "success", task_states(rerun)
    last = query_rows(
        project.db_url, "SELECT status FROM run_ledger WHERE run_kind = 'lheo' ORDER BY id"
    )
    assert last[-1] == ("noop",)


def test_backfill_of_a_date_without_archive_fails_clearly(
    sqlite_project: Project, dags: dict[str, Any]
) -> None:
    yesterday = today_paris() - datetime.timedelta(days=1)
    offers(sqlite_project.source_dir("smf-normandie") / "offres.xml", seed=9, formations=1)
    run = dags["kairos_offer_sync"].test(
        logical_date=night(yesterday), run_conf={"sources": ["smf-normandie"]}
    )
    assert str(run.state) == "failed"
    assert task_states(run)[("source.fetch", 0)] == "failed"
    assert not (
        sqlite_project.landing / "smf-normandie" / yesterday.isoformat() / "offres.xml"
    ).exists()
