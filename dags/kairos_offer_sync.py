"""Nightly offer sync: every CARIF-OREF source → landing zone → KAIROS model → checks.

02:00 Europe/Paris every night (a cron *trigger* timetable: the logical date is the night
the run belongs to, so the landing-zone folder and the default as-of date are that day).
One mapped task group per source of config/sources.yaml::

    plan ─► migrate ─► source[i]: fetch ─► load ─► kairos_exports ─► checks ─┐
        ┌──────────────────────────────────────────────────────────────────────┘
        ├─► publish (→ kairos://sessions) ─► backfill_digest
        └─► any_source_failed

`plan` logs first which sources and dates the run processes, and why (conf or defaults); a
backfill without an explicit `send_email` writes its reports without sending them.
`migrate` is the only task that changes the database schema (once, before any source).
A source that fails only fails its own branch; the others load, and `publish` emits the
``kairos://sessions`` asset (which schedules the Region report) for those that did.
`any_source_failed` then fails the run so that it is red in the UI and the failure
callback sends one notice naming the failed sources (pipelines/notify.py); the failures of
a backfill go into one digest, sent by the backfill's last run (`backfill_digest`).

This file only declares; the work is in pipelines/orchestration.py, imported inside the
tasks, so parsing it reads nothing but config/sources.yaml (for the trigger form's list).
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import (
    Asset,
    CronTriggerTimetable,
    Param,
    TriggerRule,
    dag,
    get_current_context,
    task,
    task_group,
)

from pipelines.notify import on_dag_failure, on_task_failure
from pipelines.orchestration import (
    SESSIONS_ASSET_NAME,
    SESSIONS_ASSET_URI,
    SYNC_DAG_ID,
    TIMEZONE,
    form_params,
    snapshot_param_description,
)

SESSIONS = Asset(name=SESSIONS_ASSET_NAME, uri=SESSIONS_ASSET_URI)


def _name_map_index(job: dict[str, Any]) -> None:
    """Name the running mapped instance after its source (see map_index_template)."""
    get_current_context()["source_name"] = job["source"]  # type: ignore[typeddict-unknown-key]


@dag(
    dag_id=SYNC_DAG_ID,
    description="Nightly LHEO offer sync per CARIF-OREF source, then the KAIROS checks",
    schedule=CronTriggerTimetable("0 2 * * *", timezone=TIMEZONE),
    start_date=pendulum.datetime(2026, 1, 1, tz=TIMEZONE),
    # A missed night cannot be caught up from the source (it only holds today's file):
    # past dates are reprocessed on purpose, with a backfill, from the landing zone.
    catchup=False,
    max_active_runs=1,
    max_active_tasks=4,
    dagrun_timeout=pendulum.duration(hours=4),
    on_failure_callback=on_dag_failure,
    default_args={"on_failure_callback": on_task_failure},
    tags=["kairos", "lheo"],
    # Every field has a default: the types admit null so that the form shows them optional.
    params={
        **form_params(
            sources_help="Sources to synchronise; empty = every configured source.",
            as_of_help="Date the checks and report speak about; empty = the logical date.",
            send_title="Send the report",
            send_help=(
                "E-mail the Region report once the data is in. A backfill sends only when "
                "its conf says so (tick 'Override parameters' in the backfill dialog)."
            ),
        ),
        "dry_run": Param(
            False,
            type=["null", "boolean"],
            title="Dry run",
            description="Validate and check only: nothing is archived, loaded or published.",
        ),
        "snapshot_file": Param(
            None,
            type=["null", "string"],
            title="Snapshot file",
            description=snapshot_param_description(),
        ),
    },
    doc_md=__doc__,
)
def kairos_offer_sync() -> None:
    @task
    def plan() -> list[dict[str, Any]]:
        from pipelines.orchestration import paris_date, plan_run

        context = get_current_context()
        run = context["dag_run"]
        # Manual runs may have no logical date in Airflow 3: fall back to run_after.
        moment = context.get("logical_date") or run.run_after
        return plan_run(
            context["params"],
            conf=run.conf,
            run_type=str(getattr(run.run_type, "value", run.run_type)),
            run_date=paris_date(moment),
        )

    @task
    def migrate(jobs: Any) -> list[dict[str, Any]]:
        from pipelines.orchestration import migrate_step

        return migrate_step(jobs)

    # Task inputs that come from upstream tasks are typed Any: at DAG-build time they are
    # XComArgs, at run time the upstream's dict.
    @task_group(group_id="source")
    def sync_source(job: dict[str, Any]) -> Any:
        # The UI names each mapped instance after its source (set at run time below).
        @task(map_index_template="{{ source_name }}")
        def fetch(job: dict[str, Any]) -> dict[str, Any]:
            from pipelines.airflow_connections import http_headers
            from pipelines.orchestration import fetch_step, sftp_credentials

            _name_map_index(job)
            headers = http_headers(job.get("http_conn_id"))
            return fetch_step(job, headers=headers, sftp=sftp_credentials(job))

        @task(map_index_template="{{ source_name }}")
        def load(fetched: Any) -> dict[str, Any]:
            from pipelines.orchestration import load_step

            _name_map_index(fetched["job"])
            return load_step(fetched)

        @task(map_index_template="{{ source_name }}")
        def kairos_exports(loaded: Any) -> dict[str, Any]:
            from pipelines.orchestration import exports_step

            _name_map_index(loaded["job"])
            return exports_step(loaded)

        @task(map_index_template="{{ source_name }}")
        def checks(ingested: Any) -> dict[str, Any]:
            from pipelines.orchestration import checks_step

            _name_map_index(ingested["job"])
            return checks_step(ingested)

        return checks(kairos_exports(load(fetch(job))))

    @task(outlets=[SESSIONS], trigger_rule=TriggerRule.ALL_DONE)
    def publish(results: Any) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowSkipException

        from pipelines.orchestration import asset_extra

        # `results` holds the successful sources only. With failures among the mapped
        # instances Airflow 3.3 hands over None (none succeeded), a bare dict (exactly
        # one), or a sequence: normalise.
        if results is None:
            results = []
        elif isinstance(results, dict):
            results = [results]
        done = [r for r in results if r and not r.get("dry_run")]
        if not done:
            # No asset event: the report must not go out on a night with no new data.
            raise AirflowSkipException("no source loaded (all failed, or dry run)")
        extra = asset_extra(done)
        get_current_context()["outlet_events"][SESSIONS].extra = extra
        return extra

    # No task-failure record of its own: the notice names the sources, not this task.
    @task(trigger_rule=TriggerRule.ONE_FAILED, on_failure_callback=[])
    def any_source_failed() -> None:
        raise RuntimeError(
            "at least one source failed (see the source.* tasks); the others were loaded"
        )

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def backfill_digest() -> int:
        from airflow.sdk.exceptions import AirflowSkipException

        from pipelines.notify import recorded_failures, send_backfill_digest

        context = get_current_context()
        run = context["dag_run"]
        if str(getattr(run.run_type, "value", run.run_type)) != "backfill":
            raise AirflowSkipException("not a backfill: the run's own notice, if any")
        # A backfill creates all its runs queued; the last one finds none left.
        left = context["ti"].get_dr_count(dag_id=run.dag_id, states=["queued"])
        failures = recorded_failures(run.dag_id, run.run_id)
        return send_backfill_digest(
            run.dag_id,
            run_id=run.run_id,
            logical_date=run.logical_date,
            failures=failures,
            runs_left=left,
        )

    results = sync_source.expand(job=migrate(plan()))
    published = publish(results)
    failed = any_source_failed()
    results >> failed
    # Not downstream of any_source_failed: a run's state comes from its leaves, and that
    # task must stay one for the run to be red.
    [results, published] >> backfill_digest()


kairos_offer_sync()
