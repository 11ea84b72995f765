"""Region report: runs when the nightly sync has published ``kairos://sessions``.

Scheduled on the asset, not on a clock, so the report goes out once the data is in and
never on a night when no source loaded. The asset event carries the as-of date, the
sources and whether to send (the sync's trigger form); a manual run uses this DAG's own
form. Recipients are per source (config/sources.yaml), resolved by the report module.
The report shows the check run the sync stored (its id is in the asset event); checks are
evaluated again only for a date or source the event does not cover. Each report's link
(KAIROS_REPORTS_BASE_URL) is in the task log and in the ``kairos://reports`` asset event.

This file only declares; the work is in pipelines/orchestration.py, imported in the task.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import Asset, dag, get_current_context, task

from pipelines.notify import on_dag_failure
from pipelines.orchestration import (
    REPORT_DAG_ID,
    SESSIONS_ASSET_NAME,
    SESSIONS_ASSET_URI,
    TIMEZONE,
    form_params,
)

SESSIONS = Asset(name=SESSIONS_ASSET_NAME, uri=SESSIONS_ASSET_URI)
REPORTS = Asset(name="kairos_reports", uri="kairos://reports")


@dag(
    dag_id=REPORT_DAG_ID,
    description="E-mail the Region the recruitment-quality report once the offers are in",
    schedule=[SESSIONS],
    start_date=pendulum.datetime(2026, 1, 1, tz=TIMEZONE),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=pendulum.duration(hours=1),
    on_failure_callback=on_dag_failure,
    tags=["kairos", "report"],
    params=form_params(
        sources_help="Sources to report on; empty = those of the asset event, else all.",
        as_of_help="Empty = the as-of date of the sync that triggered this run.",
        send_title="Send e-mails",
        send_help="Off: write the report files only.",
    ),
    doc_md=__doc__,
)
def kairos_region_report() -> None:
    @task(outlets=[REPORTS])
    def report() -> dict[str, Any]:
        from pipelines.orchestration import paris_date
        from pipelines.report_step import report_request, report_step

        context = get_current_context()
        events = context.get("triggering_asset_events") or {}
        extras = [dict(e.extra or {}) for e in events.get(SESSIONS, [])]
        moment = context.get("logical_date") or context["dag_run"].run_after
        request = report_request(context["params"], extras, run_date=paris_date(moment))
        done = report_step(request)
        context["outlet_events"][REPORTS].extra = {
            "as_of": done["as_of"],
            "reports": {r["source"]: r["link"] or r["html"] for r in done["reports"]},
        }
        return done

    report()


kairos_region_report()
