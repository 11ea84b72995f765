"""The DAGs' plain functions without Airflow: planning from the trigger form, failure notice."""

from __future__ import annotations

import datetime
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelines.notify import failure_message, notify_run_failure
from pipelines.orchestration import PlanError, configured_source_names, plan_jobs

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
    task_id = "source.load"
    map_index = 1


def test_failure_message_names_the_run_and_the_task() -> None:
    subject, body = failure_message(
        {
            "dag_id": "kairos_offer_sync",
            "run_id": "scheduled__x",
            "reason": "task_failure",
            "ti": _Ti(),
        }
    )
    assert subject == "[kairos-sync] kairos_offer_sync failed (scheduled__x)"
    assert "source.load (map index 1)" in body
    assert "run_ledger" in body


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
    assert "The Airflow run r of d failed: boom." in smtp_server[0][1]


def test_notice_without_address_or_server_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAIROS_ALERT_TO", raising=False)
    assert notify_run_failure({"dag_id": "d"}) is False
    monkeypatch.setenv("KAIROS_ALERT_TO", "ops@example.org")
    monkeypatch.setenv("KAIROS_SMTP_HOST", "127.0.0.1")
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        monkeypatch.setenv("KAIROS_SMTP_PORT", str(probe.getsockname()[1]))
    assert notify_run_failure({"dag_id": "d"}) is False
