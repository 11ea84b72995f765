"""The DAGs' plain functions without Airflow: planning from the trigger form, failure notice."""

from __future__ import annotations

import datetime
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelines.notify import (
    failure_message,
    notify_run_failure,
    record_task_failure,
    recorded_failures,
    send_backfill_digest,
)
from pipelines.orchestration import PlanError, configured_source_names, plan_jobs, plan_run

DAY = datetime.date(2026, 11, 3)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    file = tmp_path / "sources.yaml"
    file.write_text(
        "sources:\n"
        "  a:\n"
        f"    snapshot: {{location: {tmp_path}/a}}\n"
        "  b:\n"
        "    snapshot: {location: https://carif.example/b/offres.xml, http_conn_id: carif_b}\n"
        "    kairos_exports: {location: /srv/kairos/b}\n"
        "  c: {}\n"
    )
    return file


def test_plan_all_sources_with_a_location(config: Path, tmp_path: Path) -> None:
    jobs = plan_jobs({}, run_date=DAY, config_file=config)
    assert [j["source"] for j in jobs] == ["a", "b"]  # c has no location: skipped
    a, b = jobs
    assert a["location"] == f"{tmp_path}/a"
    assert a["exports_location"] == f"{tmp_path}/a/kairos"
    assert b["exports_location"] == "/srv/kairos/b"
    assert b["http_conn_id"] == "carif_b"
    assert a["as_of"] == a["logical_date"] == "2026-11-03"
    assert a["dry_run"] is False and a["send_email"] is True


def test_plan_from_the_form(config: Path) -> None:
    jobs = plan_jobs(
        {"sources": ["b"], "as_of": "2026-10-31", "dry_run": True, "send_email": False},
        run_date=DAY,
        config_file=config,
    )
    assert [(j["source"], j["as_of"], j["logical_date"], j["dry_run"]) for j in jobs] == [
        ("b", "2026-10-31", "2026-11-03", True)
    ]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"sources": ["zz"]}, "unknown source"),
        ({"snapshot_file": "x.xml"}, "exactly one source"),
        ({"sources": ["c"]}, "no snapshot.location"),
        ({"as_of": "03/11/2026"}, "YYYY-MM-DD"),
    ],
)
def test_plan_refusals(config: Path, params: dict[str, Any], message: str) -> None:
    with pytest.raises(PlanError, match=message):
        plan_jobs(params, run_date=DAY, config_file=config)


def test_source_names_for_the_form_never_raise(config: Path, tmp_path: Path) -> None:
    assert configured_source_names(config) == ["a", "b", "c"]
    assert configured_source_names(tmp_path / "missing.yaml") == []
    broken = tmp_path / "broken.yaml"
    broken.write_text("sources: [unclosed")
    assert configured_source_names(broken) == []


# --------------------------------------------------------------------------- notice


class _Ti:
    dag_id = "kairos_offer_sync"
    run_id = "scheduled__2026-11-03T01:00:00+00:00"
    task_id = "source.load"
    map_index = 1


def test_plan_of_a_backfill_without_send_email_sends_nothing(
    config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    defaults = {"sources": [], "as_of": None, "dry_run": False, "send_email": True}
    caplog.set_level("INFO", logger="pipelines.orchestration")
    # What the UI's backfill dialog sends when "Override parameters" is not ticked: no conf.
    jobs = plan_run(defaults, conf=None, run_type="backfill", run_date=DAY, config_file=config)
    assert [j["source"] for j in jobs] == ["a", "b"]
    assert {j["send_email"] for j in jobs} == {False}
    plan_line = next(r.getMessage() for r in caplog.records if "plan of this" in r.getMessage())
    assert "backfill run: sources a, b (default: every configured source)" in plan_line
    assert "landing-zone date 2026-11-03" in plan_line
    assert "send_email=False (backfill without send_email in its conf" in plan_line
    # Said explicitly, it is obeyed; a conf selecting a source narrows the backfill.
    conf = {"sources": ["a"], "send_email": True}
    jobs = plan_run(
        {**defaults, **conf}, conf=conf, run_type="backfill", run_date=DAY, config_file=config
    )
    assert [(j["source"], j["send_email"]) for j in jobs] == [("a", True)]
    # A scheduled night keeps the form's default: send.
    jobs = plan_run(defaults, conf={}, run_type="scheduled", run_date=DAY, config_file=config)
    assert {j["send_email"] for j in jobs} == {True}


def test_an_empty_form_field_means_its_default(config: Path) -> None:
    empty = {"sources": None, "as_of": None, "dry_run": None, "send_email": None}
    jobs = plan_jobs(empty, run_date=DAY, config_file=config)
    assert [(j["source"], j["dry_run"], j["send_email"]) for j in jobs] == [
        ("a", False, True),
        ("b", False, True),
    ]


def test_failure_notice_names_sources_errors_link_and_paris_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.region.example/")
    # Two source tasks fail; each records itself (the tasks' on_failure_callback).
    for source, task, index, error in (
        ("sigma-occitanie", "source.load", 0, ValueError("not an XML document\nline 2")),
        ("smf-normandie", "source.fetch", 1, OSError("connection refused")),
    ):
        ti = type("Ti", (), {**vars(_Ti), "task_id": task, "map_index": index})()
        record_task_failure(
            {"ti": ti, "run_id": _Ti.run_id, "source_name": source, "exception": error},
            root=tmp_path,
        )
    context = {
        "dag_id": "kairos_offer_sync",
        "run_id": _Ti.run_id,
        "reason": "task_failure",
        "logical_date": datetime.datetime(2026, 11, 3, 1, tzinfo=datetime.UTC),
    }
    failures = recorded_failures("kairos_offer_sync", _Ti.run_id, root=tmp_path)
    subject, body = failure_message(
        context, failures=failures, base_url="https://airflow.region.example"
    )
    assert subject == (
        "[kairos-sync] kairos_offer_sync failed for 2026-11-03: sigma-occitanie, smf-normandie"
    )
    assert "- sigma-occitanie, task source.load: ValueError: not an XML document" in body
    assert "line 2" not in body  # the first line only
    assert "- smf-normandie, task source.fetch: OSError: connection refused" in body
    assert (
        "https://airflow.region.example/dags/kairos_offer_sync/runs/"
        "scheduled__2026-11-03T01%3A00%3A00%2B00%3A00"
    ) in body
    assert re.search(r"Time \(Europe/Paris\): \d{4}-\d\d-\d\d \d\d:\d\d CES?T", body)
    assert "map index" not in body


def test_one_notice_per_failed_night_and_one_digest_per_backfill(
    tmp_path: Path, smtp_server: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAIROS_ALERT_TO", "ops@example.org")
    monkeypatch.setenv("KAIROS_ALERTS_DIR", str(tmp_path))
    dag_id = "kairos_offer_sync"
    nights = ["backfill__2026-11-01T01:00:00+00:00", "backfill__2026-11-02T01:00:00+00:00"]
    left = len(nights) + 1
    for run_id in [*nights, "backfill__2026-11-03T01:00:00+00:00"]:
        left -= 1
        failures = []
        if run_id in nights:  # the last backfilled night succeeds
            ti = type("Ti", (), {**vars(_Ti), "run_id": run_id})()
            record_task_failure(
                {
                    "ti": ti,
                    "run_id": run_id,
                    "source_name": "smf-normandie",
                    "exception": RuntimeError("no archived snapshot"),
                }
            )
            failures = recorded_failures(dag_id, run_id)
        sent = send_backfill_digest(dag_id, run_id=run_id, failures=failures, runs_left=left)
        # Then the run's own failure callback: for a backfill run, never a mail of its own.
        if failures:
            dag_run = type("Run", (), {"run_type": "backfill", "run_id": run_id})()
            assert notify_run_failure({"dag_id": dag_id, "dag_run": dag_run}) is False
        assert sent == (2 if left == 0 else 0)
    assert len(smtp_server) == 1
    digest = smtp_server[0][1]
    assert "backfill ended, 2 night(s) failed" in digest
    assert digest.count("no archived snapshot") == 2
    assert not (tmp_path / dag_id / "backfill-digest.jsonl").exists()
    # A failed scheduled night: one mail, whatever the number of failed tasks.
    run_id = "scheduled__2026-11-04T01:00:00+00:00"
    for index in (0, 1):
        ti = type("Ti", (), {**vars(_Ti), "run_id": run_id, "map_index": index})()
        record_task_failure({"ti": ti, "run_id": run_id, "exception": RuntimeError("boom")})
    dag_run = type("Run", (), {"run_type": "scheduled", "run_id": run_id})()
    assert notify_run_failure({"dag_id": dag_id, "dag_run": dag_run}) is True
    assert len(smtp_server) == 2
    assert recorded_failures(dag_id, run_id) == []  # forgotten once the notice is out


@pytest.fixture
def smtp_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    from aiosmtpd.controller import Controller

    received: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append((envelope.rcpt_tos, envelope.content.decode()))
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("KAIROS_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("KAIROS_SMTP_PORT", str(port))
    try:
        yield received
    finally:
        controller.stop()


def test_notice_sent_to_the_configured_address(
    smtp_server: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAIROS_ALERT_TO", "ops@example.org, astreinte@example.org")
    assert notify_run_failure({"dag_id": "d", "run_id": "r", "reason": "boom"}) is True
    assert smtp_server[0][0] == ["ops@example.org", "astreinte@example.org"]
    assert "The run of d for the night of ? failed: boom." in smtp_server[0][1]


def test_notice_without_address_or_server_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAIROS_ALERT_TO", raising=False)
    assert notify_run_failure({"dag_id": "d"}) is False
    monkeypatch.setenv("KAIROS_ALERT_TO", "ops@example.org")
    monkeypatch.setenv("KAIROS_SMTP_HOST", "127.0.0.1")
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        monkeypatch.setenv("KAIROS_SMTP_PORT", str(probe.getsockname()[1]))
    assert notify_run_failure({"dag_id": "d"}) is False


def test_sftp_source_needs_its_connection(tmp_path: Path) -> None:
    from pipelines.orchestration import sftp_credentials

    file = tmp_path / "sources.yaml"
    file.write_text(
        "sources:\n"
        "  s:\n"
        "    snapshot: {location: 'sftp://carif.example:2222/lheo/', conn_id: carif_sftp}\n"
        "  t:\n"
        "    snapshot: {location: 'sftp://carif.example/lheo/offres.xml'}\n"
    )
    jobs = {j["source"]: j for j in plan_jobs({}, run_date=DAY, config_file=file)}
    assert jobs["s"]["location"] == "sftp://carif.example:2222/lheo/"
    assert jobs["s"]["conn_id"] == "carif_sftp"
    with pytest.raises(PlanError, match=r"source t: an sftp:// location needs snapshot\.conn_id"):
        sftp_credentials(jobs["t"])
    assert sftp_credentials({**jobs["s"], "location": str(tmp_path)}) is None


def test_great_expectations_logs_warnings_only_unless_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import logging

    from pipelines.orchestration import quiet_great_expectations

    gx = logging.getLogger("great_expectations")
    monkeypatch.setattr(gx, "level", logging.NOTSET)
    monkeypatch.delenv("KAIROS_GX_LOG_LEVEL", raising=False)
    quiet_great_expectations()
    from quality_checks.gx_validation import _gx

    _gx()  # GX's own modules set their loggers to INFO at import: that must not win
    for name in ("great_expectations.data_context.types.base", "great_expectations.core"):
        assert not logging.getLogger(name).isEnabledFor(logging.INFO)
    monkeypatch.setenv("KAIROS_GX_LOG_LEVEL", "info")
    quiet_great_expectations()
    assert gx.level == logging.INFO


def test_report_link_from_the_configured_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipelines.report_step import report_link

    monkeypatch.delenv("KAIROS_REPORTS_BASE_URL", raising=False)
    assert report_link("2026-11-03", "smf-normandie", "rapport.html") is None
    monkeypatch.setenv("KAIROS_REPORTS_BASE_URL", "https://rapports.region.example/kairos/")
    assert report_link("2026-11-03", "smf-normandie", "rapport.html") == (
        "https://rapports.region.example/kairos/2026-11-03/smf-normandie/rapport.html"
    )
