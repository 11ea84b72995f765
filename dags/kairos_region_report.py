"""Region report: runs when the nightly sync has published ``kairos://sessions``.

Scheduled on the asset, not on a clock, so the report goes out once the data is in and
never on a night when no source loaded. The asset event carries the as-of date, the
sources and whether to send (the sync's trigger form); a manual run uses this DAG's own
form. Recipients are per source (config/sources.yaml), resolved by the report module.

This file only declares; the work is in pipelines/orchestration.py, imported in the task.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task

from pipelines.orchestration import (
    REPORT_DAG_ID,
    SESSIONS_ASSET_NAME,
    SESSIONS_ASSET_URI,
    TIMEZONE,
    configured_source_names,
)

SESSIONS = Asset(name=SESSIONS_ASSET_NAME, uri=SESSIONS_ASSET_URI)


def _notify_failure(context: Any) -> None:
    from pipelines.notify import notify_run_failure

    notify_run_failure(context)


@dag(
    dag_id=REPORT_DAG_ID,
    description="E-mail the Region the recruitment-quality report once the offers are in",
    schedule=[SESSIONS],
    start_date=pendulum.datetime(2026, 1, 1, tz=TIMEZONE),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=pendulum.duration(hours=1),
    on_failure_callback=_notify_failure,
    tags=["kairos", "report"],
    params={
        "sources": Param(
            [],
            type="array",
            items={"type": "string"},
            examples=configured_source_names(),
            title="Sources",
            description="Sources to report on; empty = those of the asset event, else all.",
        ),
        "as_of": Param(
            None,
            type=["null", "string"],
            format="date",
            title="As-of date",
            description="Empty = the as-of date of the sync that triggered this run.",
        ),
        "send_email": Param(
            True,
            type="boolean",
            title="Send e-mails",
            description="Off: write the report files only.",
        ),
    },
    doc_md=__doc__,
)
def kairos_region_report() -> None:
    @task
    def report() -> dict[str, Any]:
        from pipelines.orchestration import paris_date, report_request, report_step

        context = get_current_context()
        events = context.get("triggering_asset_events") or {}
        extras = [dict(e.extra or {}) for e in events.get(SESSIONS, [])]
        moment = context.get("logical_date") or context["dag_run"].run_after
        request = report_request(context["params"], extras, run_date=paris_date(moment))
        return report_step(request)

    report()


kairos_region_report()
